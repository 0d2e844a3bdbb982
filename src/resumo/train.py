"""Train: LoRA supervised fine-tuning of the student on the teacher's summaries.

    resumo train --pairs runs/pairs --out runs/model
    resumo train --pairs runs/pairs --out runs/model --set train.lora.r=16 --set train.epochs=1

peft LoRA + trl SFTTrainer on prompt/completion chats (the student's chat
template; loss on the summary tokens only), in length-grouped or padding-free
batches (`train.batching`, resumo.batching). At the end of each epoch:
validation loss, and ROUGE-Lsum of greedy summaries of `eval_samples`
validation articles. A killed run started again with the same `--out` resumes
from its last complete checkpoint; given a run id (`--run-id`, in the pipeline the
KFP run's) and `train.checkpoint_store`, from the copy kept there, in an empty
folder too (resumo.checkpoints). SIGTERM saves a checkpoint at the end of the
step and stops.

Writes under `--out`: `adapter/` (loadable by `resumo summarize`, with
`resumo_model.json`), `merged/` when `merge` is set, `curves.png`,
`metrics.json` (the metrics and the resolved config), `checkpoints/`.

Prints `name=value` lines for Katib's StdOut metrics collector (the tuner's
objective is `rougeLsum`): `eval_loss=` and `rougeLsum=` after each epoch, so
medianstop can stop a trial that trails the others, and last, one line per
metric, in this order:

    eval_loss=1.234567                  validation loss after the last epoch
    rougeLsum=0.123456                  validation ROUGE-Lsum after the last epoch
    train_tokens_per_second=1234.5      real (non-padding) tokens per second of
                                        training steps in this process (under
                                        torchrun: of every rank together); absent
                                        when a resumed run had no step left

Under torchrun (resumo.launch: one process per GPU) every rank trains and only
rank 0 writes outputs and prints these lines.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from resumo import artifacts, attention, batching, checkpoints, distributed, generation, metrics, models, prompts, tables
from resumo.config import TrainConfig
from resumo.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    adapter_dir: Path
    metrics: dict[str, float]


def run(cfg: TrainConfig, pairs_dir: str | Path, out_dir: str | Path, run_id: str | None = None) -> TrainResult:
    """Train; with a `run_id` and train.checkpoint_store, checkpoints are also kept in storage
    for that run (resumo.checkpoints), so a rerun in an empty folder resumes from them."""
    out_dir = Path(out_dir)
    remote = checkpoints.location(cfg.checkpoint_store, run_id, "train")
    train_rows = _usable_pairs(pairs_dir, "train")
    val_rows = _usable_pairs(pairs_dir, "val")
    throughput, sigterm = batching.Throughput(), checkpoints.StopOnSigterm()
    callbacks = [throughput, _ValidationRouge(cfg, val_rows), sigterm] + ([checkpoints.Mirror(remote)] if remote else [])
    trainer = _build_trainer(cfg, train_rows, val_rows, out_dir, callbacks=callbacks)
    if remote:
        # One download per node (each has its own disk), while the node's other ranks wait for it.
        if trainer.args.local_process_index == 0:
            checkpoints.restore(remote, out_dir / artifacts.CHECKPOINTS)
        trainer.accelerator.wait_for_everyone()
    checkpoint = last_checkpoint(out_dir / artifacts.CHECKPOINTS)
    if checkpoint:
        log.info("train: resuming from %s", checkpoint)
    with sigterm:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if sigterm.stopped:
        where = remote or out_dir / artifacts.CHECKPOINTS
        raise checkpoints.Preempted(f"train: stopped on SIGTERM at step {trainer.state.global_step}, its checkpoint saved to {where}; run again to resume")

    adapter_dir = out_dir / artifacts.ADAPTER
    scores = _final_scores(trainer.state.log_history, throughput)
    if not distributed.is_main():  # under torchrun every rank trained the same model; rank 0 writes it
        return TrainResult(adapter_dir=adapter_dir, metrics=scores)
    _save_adapter(trainer, cfg, adapter_dir, list(train_rows["text"]))
    if cfg.merge:
        _save_merged(trainer, out_dir / artifacts.MERGED)
    _plot_curves(trainer.state.log_history, out_dir / artifacts.CURVES)
    run_info = {"global_step": trainer.state.global_step, "start_step": throughput.start_step, "train_tokens": throughput.tokens, "train_seconds": throughput.seconds}
    run_info |= {"world_size": trainer.args.world_size, "per_device_batch_size": trainer.args.per_device_train_batch_size, "gradient_accumulation": trainer.args.gradient_accumulation_steps}
    (out_dir / artifacts.TRAIN_METRICS).write_text(json.dumps({"metrics": scores, "run": run_info, "config": cfg.model_dump()}, indent=2))
    print_metric_lines(scores)
    if remote:  # rank 0 alone: the other ranks returned above
        checkpoints.clean(remote)
    return TrainResult(adapter_dir=adapter_dir, metrics=scores)


def last_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest complete checkpoint: the Trainer writes trainer_state.json last, so a
    checkpoint without it was cut short by the kill and is skipped."""
    complete = [p for p in checkpoints_dir.glob("checkpoint-*") if (p / artifacts.TRAINER_STATE).exists()]
    return max(complete, key=lambda p: int(p.name.split("-")[1]), default=None)


def _usable_pairs(pairs_dir: str | Path, split: str):
    df = tables.read_split(pairs_dir, split, columns=["text", "summary", "filter_reason"])
    usable = df[df["filter_reason"].isna()]
    if usable.empty:
        raise DataError(f"no usable pairs in split {split!r} of {pairs_dir} ({len(df)} rows, all rejected by the distill filter)")
    return usable


def to_chat_dataset(rows, cfg: TrainConfig):
    """Conversational prompt/completion rows: trl applies the chat template and masks the prompt."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {"prompt": prompts.user_message(text, cfg.prompt), "completion": [{"role": "assistant", "content": summary}]}
            for text, summary in zip(rows["text"], rows["summary"])
        ]
    )


def _build_trainer(cfg: TrainConfig, train_rows, val_rows, out_dir: Path, callbacks=()):
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    bf16 = cfg.bf16 and cuda and torch.cuda.is_bf16_supported()
    _refuse_slow_attention(cfg, cuda)
    student = models.resolve(cfg.student)
    tokenizer = AutoTokenizer.from_pretrained(student)
    generation.require_chat_template(tokenizer, cfg.student)  # trl renders every example with it
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    attention.register()
    model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.bfloat16 if bf16 else torch.float32, attn_implementation=cfg.attn_implementation)
    if cfg.liger_kernel and cuda:
        _apply_liger(model)
    processes = distributed.world_size()
    per_device_batch, accumulation = distributed.split_batch(cfg.batch_size, cfg.gradient_accumulation, processes)  # the configured batch is the global one
    if cfg.micro_batch_tokens:  # one optimizer step's share a dataloader batch, cut by tokens (resumo.batching)
        per_device_batch, accumulation = per_device_batch * accumulation, 1
    checkpointing = cuda and _checkpointing(cfg, model.config)
    args = SFTConfig(
        output_dir=str(out_dir / "checkpoints"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=per_device_batch,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,  # trl truncates while tokenizing: our collator gets no over-long rows
        completion_only_loss=True,
        packing=False,  # the study's examples, one per sequence: padding-free keeps that, packing would not
        # trl's own padding_free flag stays off: it refuses max_length without packing. Our
        # collator (resumo.batching) does the same flattening on already truncated rows.
        padding_free=False,
        train_sampling_strategy="group_by_length" if cfg.batching == "length_grouped" else "random",
        include_num_input_tokens_seen=batching.tokens_seen_mode(cfg.batching),
        gradient_checkpointing=checkpointing,
        bf16=bf16,
        use_cpu=not cuda,
        eval_strategy="epoch",
        save_strategy="steps" if cfg.save_steps else "epoch",
        save_steps=cfg.save_steps or 500,
        save_total_limit=2,  # the last checkpoint to resume from, and one in case it is half-written
        logging_steps=1,
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataset_num_proc=None,
        # Under torchrun: gloo between CPU processes (tests, laptops), NCCL between GPUs (the Trainer's default).
        ddp_backend="gloo" if processes > 1 and not cuda else None,
        ddp_find_unused_parameters=False,  # every LoRA weight gets a gradient each step; looking for unused ones costs a pass
    )
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    trainer = batching.StepGroupedSFTTrainer(
        model=model,
        args=args,
        data_collator=batching.collator(cfg.batching, tokenizer.pad_token_id, cfg.micro_batch_tokens),
        train_dataset=to_chat_dataset(train_rows, cfg),
        eval_dataset=to_chat_dataset(val_rows, cfg),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=list(callbacks),
    )
    if cfg.compile:
        _compile_layers(trainer.model)
    return trainer


def _refuse_slow_attention(cfg: TrainConfig, cuda: bool) -> None:
    """A padding-free row under sdpa or eager attends through a mask over the whole row: on a GPU that
    ran at a third of padded batches' speed (GPU.md), so it is refused there, not slowly trained."""
    if cuda and cfg.batching == "padding_free" and cfg.attn_implementation in ("sdpa", "eager"):
        raise ConfigError(
            f"train.batching=padding_free with train.attn_implementation={cfg.attn_implementation} on a GPU masks attention over the whole row "
            "(a third of the speed of padded batches); set train.attn_implementation=varlen (PyTorch's varlen flash kernel), or train.batching=length_grouped"
        )
    if cfg.attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ConfigError("train.attn_implementation=flash_attention_2 needs the flash-attn package, which this environment lacks; use train.attn_implementation=varlen (no package needed)")


def _checkpointing(cfg: TrainConfig, model_config) -> bool:
    """train.gradient_checkpointing, with `auto` resolved against this GPU's memory."""
    if cfg.gradient_checkpointing != "auto":
        return cfg.gradient_checkpointing
    import torch

    tokens = cfg.micro_batch_tokens or cfg.batch_size * cfg.max_length
    per_token = batching.activation_bytes_per_token(model_config, cfg.lora.r, len(cfg.lora.target_modules), cfg.lora.dropout, cfg.liger_kernel)
    device_bytes = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    needed = batching.needs_checkpointing(tokens, per_token, device_bytes)
    log.info("train: a micro-batch of %d tokens keeps ~%.1f GiB of activations on a %.0f GiB GPU: gradient checkpointing %s", tokens, tokens * per_token / 2**30, device_bytes / 2**30, "on" if needed else "off")
    return needed


def _compile_layers(model) -> int:
    """train.compile: each decoder layer (the model's largest list of like blocks) compiled in place, so
    state-dict keys, hooks and the saved adapter are unchanged; returns how many layers."""
    from accelerate.utils.other import is_repeated_blocks

    layers = max((m for m in model.modules() if is_repeated_blocks(m)), key=len, default=None)
    if layers is None:
        raise ConfigError(f"train.compile=true found no list of decoder layers in {type(model).__name__}; set train.compile=false")
    for layer in layers:
        # torch's automatic dynamic shapes: the first micro-batch compiles for its shape, the second marks what
        # changed (the token count, the longest example) dynamic, and no later one recompiles; head counts stay fixed.
        layer.compile()
    log.info("train: compiled %d %s layers in place", len(layers), type(layers[0]).__name__)
    return len(layers)


def _apply_liger(model) -> None:
    """Liger's RMSNorm, SwiGLU and RoPE kernels; the loss stays trl's (it scores only the summary tokens)."""
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError as err:
        raise ConfigError("train.liger_kernel=true needs the liger-kernel package, which the train image does not install; set train.liger_kernel=false (the default, measured faster)") from err

    _apply_liger_kernel_to_instance(model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False)


def _save_adapter(trainer, cfg: TrainConfig, adapter_dir: Path, train_texts: list[str]) -> Path:
    from resumo import score

    trainer.model.save_pretrained(adapter_dir)
    trainer.processing_class.save_pretrained(adapter_dir)
    meta = {"base_model": cfg.student, "prompt": cfg.prompt.model_dump(), "lora": cfg.lora.model_dump(), "config": cfg.model_dump()}
    # The token-length range of the training texts: summarize and score count inputs outside it (score.input_guard).
    meta[score.INPUT_TOKENS] = score.training_input_record(trainer.processing_class, train_texts)
    (adapter_dir / generation.MODEL_META).write_text(json.dumps(meta, indent=2))
    return adapter_dir


def _save_merged(trainer, merged_dir: Path) -> Path:
    """The base weights with the adapter folded in; the trainer's model is left as it was."""
    import copy

    merged = copy.deepcopy(trainer.model).merge_and_unload()
    merged.save_pretrained(merged_dir)
    trainer.processing_class.save_pretrained(merged_dir)
    return merged_dir


class _ValidationRouge(TrainerCallback):
    """At each evaluation (end of epoch): ROUGE-Lsum of greedy summaries of validation
    articles, appended to the log history beside eval_loss, so checkpoints keep it."""

    def __init__(self, cfg: TrainConfig, val_rows):
        self.cfg = cfg
        self.rows = val_rows.head(cfg.eval_samples) if cfg.eval_samples else val_rows

    def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):
        tokenizer = processing_class
        side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation continues the prompt
        try:
            loaded = generation.LoadedModel(model.eval(), tokenizer, self.cfg.prompt)
            # The dynamic cache: a compiled static one would be built around the model in training, every epoch.
            predictions = generation.summarize(loaded, list(self.rows["text"]), self.cfg.prompt, self.cfg.batch_size, self.cfg.max_new_tokens, desc="validate", engine="dynamic")
        finally:
            tokenizer.padding_side = side
            model.train()
        score = metrics.rouge(predictions, list(self.rows["summary"]))["rougeLsum"]
        state.log_history.append({"eval_rougeLsum": score, "epoch": state.epoch, "step": state.global_step})
        log.info("train: epoch %.2f validation ROUGE-Lsum %.4f on %d articles", state.epoch, score, len(self.rows))
        if distributed.is_main():
            print_metric_lines({"eval_loss": kwargs["metrics"]["eval_loss"], "rougeLsum": score})  # each epoch: one report for medianstop


def print_metric_lines(scores: dict[str, float]) -> None:
    """Katib's StdOut collector format (see the module docstring)."""
    for name, value in scores.items():
        print(f"{name}={value:.6f}", flush=True)


def _final_scores(history: list[dict], throughput: batching.Throughput) -> dict[str, float]:
    """The last epoch's validation loss and ROUGE-Lsum (kept in checkpoints, so a resumed run has them too)."""
    def last(key: str) -> float:
        return float(next(h[key] for h in reversed(history) if key in h))

    scores = {"eval_loss": last("eval_loss"), "rougeLsum": last("eval_rougeLsum")}  # every epoch ends in an evaluation
    if throughput.tokens_per_second is not None:
        scores["train_tokens_per_second"] = throughput.tokens_per_second
    return scores


def _plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    rouge = [(h["step"], h["eval_rougeLsum"]) for h in history if "eval_rougeLsum" in h]
    fig, (loss_ax, rouge_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    if train:
        loss_ax.plot(*zip(*train), label="train loss")
    if evals:
        loss_ax.plot(*zip(*evals), "o-", label="validation loss")
    loss_ax.set_xlabel("optimizer step")
    loss_ax.set_ylabel("cross-entropy (summary tokens)")
    loss_ax.legend()
    if rouge:
        rouge_ax.plot(*zip(*rouge), "o-", color="tab:green")
    rouge_ax.set_xlabel("optimizer step")
    rouge_ax.set_ylabel("validation ROUGE-Lsum")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Train: LoRA supervised fine-tuning of the student on the teacher's summaries.

    resumo train --pairs runs/pairs --out runs/model
    resumo train --pairs runs/pairs --out runs/model --set train.lora.r=16 --set train.epochs=1

peft LoRA + trl SFTTrainer on prompt/completion chats (the student's chat
template; loss on the summary tokens only). A killed run started again with the
same `--out` resumes from its last checkpoint. Writes `adapter/` (loadable by
`resumo summarize`), `metrics.json`, `curves.png`, and prints `name=value`
lines for Katib's StdOut metrics collector.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from resumo import generation, metrics, models, prompts, tables
from resumo.config import TrainConfig
from resumo.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    adapter_dir: Path
    metrics: dict[str, float]


def run(cfg: TrainConfig, pairs_dir: str | Path, out_dir: str | Path) -> TrainResult:
    out_dir = Path(out_dir)
    train_rows = _usable_pairs(pairs_dir, "train")
    val_rows = _usable_pairs(pairs_dir, "val")
    trainer = _build_trainer(cfg, train_rows, val_rows, out_dir)
    checkpoints = sorted((out_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if checkpoints:
        log.info("train: resuming from %s", checkpoints[-1])
    trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)

    adapter_dir = _save_adapter(trainer, cfg, out_dir / "adapter")
    scores = _evaluate(trainer, cfg, val_rows)
    _plot_curves(trainer.state.log_history, out_dir / "curves.png")
    (out_dir / "metrics.json").write_text(json.dumps({"metrics": scores, "config": cfg.model_dump()}, indent=2))
    for name, value in scores.items():
        print(f"{name}={value:.6f}", flush=True)  # Katib StdOut collector format
    return TrainResult(adapter_dir=adapter_dir, metrics=scores)


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


def _build_trainer(cfg: TrainConfig, train_rows, val_rows, out_dir: Path):
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    student = models.resolve(cfg.student)
    tokenizer = AutoTokenizer.from_pretrained(student)
    model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.bfloat16 if bf16 else torch.float32)
    args = SFTConfig(
        output_dir=str(out_dir / "checkpoints"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        completion_only_loss=True,
        packing=False,  # see DESIGN.md: packing leaks attention across examples without varlen kernels
        # Batches of similar lengths waste little on padding (the articles span 500-4,000 tokens).
        train_sampling_strategy="group_by_length",
        gradient_checkpointing=cfg.gradient_checkpointing and cuda,
        bf16=bf16,
        use_cpu=not cuda,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,  # the last checkpoint to resume from, and one in case it is half-written
        logging_steps=1,
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataset_num_proc=None,
    )
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=to_chat_dataset(train_rows, cfg),
        eval_dataset=to_chat_dataset(val_rows, cfg),
        processing_class=tokenizer,
        peft_config=lora,
    )


def _save_adapter(trainer, cfg: TrainConfig, adapter_dir: Path) -> Path:
    trainer.model.save_pretrained(adapter_dir)
    trainer.processing_class.save_pretrained(adapter_dir)
    meta = {"base_model": cfg.student, "prompt": cfg.prompt.model_dump(), "lora": cfg.lora.model_dump(), "config": cfg.model_dump()}
    (adapter_dir / generation.MODEL_META).write_text(json.dumps(meta, indent=2))
    return adapter_dir


def _evaluate(trainer, cfg: TrainConfig, val_rows) -> dict[str, float]:
    """Validation ROUGE-Lsum from generated summaries (what the tuner maximises) and eval loss."""
    rows = val_rows.head(cfg.eval_samples) if cfg.eval_samples else val_rows
    eval_loss = trainer.evaluate()["eval_loss"]
    tokenizer = trainer.processing_class
    tokenizer.padding_side = "left"
    loaded = generation.LoadedModel(trainer.model.eval(), tokenizer, cfg.prompt)
    predictions = generation.summarize(loaded, list(rows["text"]), cfg.prompt, cfg.batch_size, cfg.max_new_tokens, desc="validate")
    return {"eval_loss": float(eval_loss), "rougeLsum": metrics.rouge(predictions, list(rows["summary"]))["rougeLsum"]}


def _plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (summary tokens)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

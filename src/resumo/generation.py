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
    from resumo.registry_pointer import current_production

    pointer_uri = storage.join(registry, artifacts.POINTER)
    pointer = current_production(registry)
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
    is_adapter = (Path(path) / artifacts.ADAPTER_CONFIG).exists()
    if is_adapter and "base_model" not in meta:
        raise DataError(f"{ref} holds a LoRA adapter but no {MODEL_META} naming its base model; it was not saved by `resumo train`")
    if is_adapter:
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(models.resolve(meta["base_model"]), dtype=dtype)
        model = PeftModel.from_pretrained(base, path)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    # An adapter folder may lack the tokenizer; a hub id or full model folder has it.
    has_tokenizer = not Path(path).is_dir() or (Path(path) / artifacts.TOKENIZER_CONFIG).exists()
    tokenizer = AutoTokenizer.from_pretrained(path if has_tokenizer else models.resolve(meta["base_model"]))
    require_chat_template(tokenizer, ref)
    tokenizer.padding_side = "left"  # decoder-only: new tokens must follow the prompt directly
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    prompt = PromptConfig.model_validate(meta["prompt"]) if "prompt" in meta else None
    return LoadedModel(model, tokenizer, prompt)


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


def summarize(loaded: LoadedModel, texts: list[str], prompt: PromptConfig, batch_size: int, max_new_tokens: int, desc: str = "summarize") -> list[str]:
    """Greedy summaries of `texts`, in order. Batches are sorted by length so little is padding."""
    chats = [prompts.user_message(text, prompt) for text in texts]
    return generate_chat(loaded, chats, batch_size, max_new_tokens, desc)


def generate_chat(loaded: LoadedModel, chats: list[list[dict]], batch_size: int, max_new_tokens: int, desc: str = "generate") -> list[str]:
    import torch

    tokenizer, model = loaded.tokenizer, loaded.model
    stops = stop_token_ids(tokenizer, model)
    rendered = [tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) for chat in chats]
    order = sorted(range(len(rendered)), key=lambda i: -len(rendered[i]))
    outputs: list[str] = [""] * len(rendered)
    with tqdm(total=len(rendered), desc=desc, unit="text") as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            encoded = tokenizer([rendered[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                generated = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
            new_tokens = generated[:, encoded["input_ids"].shape[1] :]
            for i, text in zip(batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                outputs[i] = text.strip()
            bar.update(len(batch))
    return outputs

"""How the vllm teacher's engine is sized: GPUs, context length, memory share and dtype.

`LLM(model=...)` alone takes one GPU and the model's whole context: a 70B teacher
does not load, and an 8B one at its default 128K context asks for more KV cache
than a 24 GB GPU holds. `engine_args` gives vLLM what distill needs:

- `tensor_parallel_size`: distill.teacher.tensor_parallel_size, else every visible GPU;
- `max_model_len`: distill.teacher.max_model_len, else the prompt's own tokens (its
  instructions in the teacher's chat template, counted with the teacher's tokenizer)
  + the article budget (max_input_tokens, student tokens, x INPUT_SLACK) + max_new_tokens;
- `gpu_memory_utilization` and `dtype` as configured.
"""

from __future__ import annotations

import math

from resumo import artifacts, models, prompts
from resumo.config import PromptConfig, TeacherConfig

# The token budget counts the student's tokens (scrape.tokenizer); the teacher's tokenizer may cut the
# same Portuguese text into more: 25% covers Llama-3's and Qwen2.5's vocabularies on ordinary prose.
INPUT_SLACK = 1.25


def engine_args(teacher: TeacherConfig, prompt: PromptConfig) -> dict:
    """The keyword arguments of `vllm.LLM` for this teacher."""
    model = models.resolve(teacher.model)
    args = {
        "model": model,
        "tensor_parallel_size": teacher.tensor_parallel_size or max(_visible_gpus(), 1),
        "gpu_memory_utilization": teacher.gpu_memory_utilization,
        "dtype": teacher.dtype,
    }
    length = teacher.max_model_len or derived_max_model_len(model, teacher, prompt)
    return args | ({"max_model_len": length} if length else {})


def derived_max_model_len(model: str, teacher: TeacherConfig, prompt: PromptConfig) -> int | None:
    """Prompt tokens + the article budget with slack + the answer; None without a budget (the model's own length)."""
    if teacher.max_input_tokens is None:
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    instructions = len(tokenizer.apply_chat_template(prompts.user_message("", prompt), add_generation_prompt=True, tokenize=True, return_dict=False))
    return instructions + math.ceil(teacher.max_input_tokens * INPUT_SLACK) + teacher.max_new_tokens


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# --- score through vLLM (score.engine = vllm, in the vLLM image) ---------------------------------

# Ranks vLLM's LoRA kernels are built for; an adapter's rank is served by the next one up.
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank(adapter_dir: str) -> int:
    """The rank of a peft adapter folder (adapter_config.json's `r`)."""
    import json
    from pathlib import Path

    return int(json.loads((Path(adapter_dir) / artifacts.ADAPTER_CONFIG).read_text())["r"])


def served_rank(ranks: list[int]) -> int:
    """max_lora_rank for adapters of these ranks: the smallest supported rank that holds them all."""
    top = max(ranks)
    for rank in LORA_RANKS:
        if rank >= top:
            return rank
    raise ValueError(f"LoRA rank {top} is above the {LORA_RANKS[-1]} vLLM serves")


def score_engine_args(base: str, adapter_ranks: list[int], max_model_len: int, gpu_memory_utilization: float = 0.9) -> dict:
    """`vllm.LLM` arguments for one base model and the adapters over it that score asks in the same engine."""
    args = {"model": base, "dtype": "auto", "max_model_len": max_model_len, "gpu_memory_utilization": gpu_memory_utilization, "tensor_parallel_size": max(_visible_gpus(), 1)}
    if adapter_ranks:
        args |= {"enable_lora": True, "max_lora_rank": served_rank(adapter_ranks), "max_loras": len(adapter_ranks)}
    return args


class ScoreEngine:
    """Score's generation through vLLM: one engine per base model, its adapters as LoRA requests.

    `plan` maps each scored name to (base, adapter folder or None); the untuned student
    and every adapter tuned from it share one engine, built once with `max_lora_rank`
    from their adapters and `max_model_len` from the longest prompt it is asked. An engine
    is freed before the next base model loads.
    """

    def __init__(self, plan: dict[str, tuple[str, str | None]], max_new_tokens: int):
        self.plan, self.max_new_tokens = plan, max_new_tokens
        self._base: str | None = None
        self._llm = self._tokenizer = self._stops = None
        self._lora_ids = {name: i + 1 for i, name in enumerate(n for n, (_, adapter) in plan.items() if adapter)}

    def summarize(self, name: str, texts: list[str], prompt: PromptConfig) -> list[str]:
        """Greedy summaries of `texts` by the model scored as `name`, in order."""
        from vllm import SamplingParams

        chats = [prompts.user_message(text, prompt) for text in texts]
        base, adapter = self.plan[name]
        llm = self._engine(base, chats)
        params = SamplingParams(temperature=0.0, max_tokens=self.max_new_tokens, stop_token_ids=self._stops)
        request = self._lora_request(name, adapter) if adapter else None
        return [out.outputs[0].text.strip() for out in llm.chat(chats, params, use_tqdm=True, lora_request=request)]

    def close(self) -> None:
        import gc

        self._llm = self._base = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _engine(self, base: str, chats: list[list[dict]]):
        if self._base != base:
            self.close()
            from types import SimpleNamespace

            from transformers import AutoTokenizer, GenerationConfig
            from vllm import LLM

            from resumo import generation

            tokenizer = AutoTokenizer.from_pretrained(base)
            longest = max(len(tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=False)) for chat in chats)
            try:
                config = GenerationConfig.from_pretrained(base)
            except OSError:  # a model folder without generation_config.json: the tokenizer's stops alone
                config = None
            self._stops = generation.stop_token_ids(tokenizer, SimpleNamespace(generation_config=config or SimpleNamespace(eos_token_id=None)))
            ranks = [lora_rank(adapter) for b, adapter in self.plan.values() if b == base and adapter]
            self._llm, self._base = LLM(**score_engine_args(base, ranks, longest + self.max_new_tokens)), base
        return self._llm

    def _lora_request(self, name: str, adapter: str):
        from vllm.lora.request import LoRARequest

        return LoRARequest(name, self._lora_ids[name], adapter)

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

from resumo import models, prompts
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

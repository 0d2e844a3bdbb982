"""The vllm teacher up to the `LLM(...)` call, with a stand-in `vllm` module (vLLM runs only in its GPU image)."""

import sys
import types

import pytest
from transformers import AutoTokenizer

from resumo import models, prompts, teachers, vllm_engine
from resumo.config import load_config


class _StandInLLM:
    """Records how the engine was built and answers `chat` as vLLM's RequestOutput objects do."""

    built: list[dict] = []

    def __init__(self, **kwargs):
        _StandInLLM.built.append(kwargs)
        self.asked = []

    def chat(self, chats, params, use_tqdm=True):
        self.asked.append((chats, params))
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"resumo {i}")]) for i, _ in enumerate(chats)]


@pytest.fixture
def vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = _StandInLLM
    module.SamplingParams = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "vllm", module)
    _StandInLLM.built = []
    return module


def _distill(*sets):
    return load_config("full", ["distill.teacher.model=tiny:qwen2", *sets]).distill


def test_the_engine_is_sized_for_distill_not_for_the_models_whole_context(vllm):
    cfg = _distill()
    teacher = teachers.make_teacher(cfg.teacher, cfg.prompt)
    (built,) = _StandInLLM.built
    tokenizer = AutoTokenizer.from_pretrained(models.resolve("tiny:qwen2"))
    instructions = len(tokenizer.apply_chat_template(prompts.user_message("", cfg.prompt), add_generation_prompt=True, tokenize=True, return_dict=False))
    assert 30 < instructions < 200  # the prompt's own words, in the teacher's chat template
    # The full profile's budget is 4,000 student tokens (scrape.max_tokens), answers up to 500 tokens.
    assert cfg.teacher.max_input_tokens == 4000
    assert built == {
        "model": models.resolve("tiny:qwen2"),
        "tensor_parallel_size": max(vllm_engine._visible_gpus(), 1),
        "max_model_len": instructions + 5000 + 500,
        "gpu_memory_utilization": 0.9,
        "dtype": "auto",
    }
    answers = teacher.generate(["Um texto.", "Outro texto."])
    assert answers == ["resumo 0", "resumo 1"]
    (chats, params), = teacher._llm.asked
    assert chats[1] == prompts.user_message("Outro texto.", cfg.prompt) and params == {"temperature": 0.0, "max_tokens": 500}


def test_set_values_win_and_the_budget_follows_scrape(vllm):
    cfg = _distill("distill.teacher.tensor_parallel_size=8", "distill.teacher.max_model_len=8192", "distill.teacher.gpu_memory_utilization=0.8", "distill.teacher.dtype=bfloat16")
    teachers.make_teacher(cfg.teacher, cfg.prompt)
    assert {k: v for k, v in _StandInLLM.built[0].items() if k != "model"} == {"tensor_parallel_size": 8, "max_model_len": 8192, "gpu_memory_utilization": 0.8, "dtype": "bfloat16"}
    assert load_config("full", ["scrape.max_tokens=2000"]).distill.teacher.max_input_tokens == 2000


def test_without_a_budget_the_model_keeps_its_own_length(vllm):
    cfg = _distill().teacher.model_copy(update={"max_input_tokens": None})
    assert "max_model_len" not in vllm_engine.engine_args(cfg, _distill().prompt)

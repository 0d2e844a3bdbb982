"""Score through vLLM (score.engine=vllm) up to the engine calls, with a stand-in `vllm` module: vLLM runs
only in its GPU image. One engine per base model; each tuned adapter of that base is a LoRA request."""

import json
import sys
import types

import pytest

from resumo import generation, models, score, vllm_engine
from resumo.config import PromptConfig, load_config


class _StandInLLM:
    """Records how each engine was built and what it was asked; answers as vLLM's RequestOutput objects do."""

    built: list[dict] = []
    asked: list[tuple] = []

    def __init__(self, **kwargs):
        _StandInLLM.built.append(kwargs)

    def chat(self, chats, params, use_tqdm=True, lora_request=None):
        _StandInLLM.asked.append((len(chats), params, lora_request))
        tag = lora_request.lora_name if lora_request else "base"
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f" {tag} resumo {i} ")]) for i in range(len(chats))]


@pytest.fixture
def vllm(monkeypatch):
    module, lora, request = types.ModuleType("vllm"), types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    module.LLM = _StandInLLM
    module.SamplingParams = lambda **kwargs: kwargs
    request.LoRARequest = lambda name, lora_id, path: types.SimpleNamespace(lora_name=name, lora_int_id=lora_id, lora_path=path)
    for name, mod in (("vllm", module), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, mod)
    _StandInLLM.built, _StandInLLM.asked = [], []
    return module


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A rank-4 LoRA adapter over tiny:qwen2, as `resumo train` saves one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = tmp_path_factory.mktemp("adapter")
    get_peft_model(AutoModelForCausalLM.from_pretrained(models.resolve("tiny:qwen2")), LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(path)
    (path / generation.MODEL_META).write_text(json.dumps({"base_model": "tiny:qwen2", "prompt": PromptConfig(n_words=40).model_dump()}))
    return str(path)


@pytest.mark.parametrize(("ranks", "served"), [([4], 8), ([8, 64], 64), ([65], 128), ([512], 512)])
def test_the_served_rank_is_the_smallest_vllm_rank_holding_every_adapter(ranks, served):
    assert vllm_engine.served_rank(ranks) == served


def test_a_rank_above_what_vllm_serves_is_refused():
    with pytest.raises(ValueError, match="LoRA rank 1024 is above the 512 vLLM serves"):
        vllm_engine.served_rank([1024])


def test_base_and_tuned_share_one_engine_and_the_adapter_is_a_lora_request(vllm, adapter):
    plan = {"baseline": generation.base_and_adapter("tiny:qwen2"), "tuned": generation.base_and_adapter(adapter)}
    engine = vllm_engine.ScoreEngine(plan, max_new_tokens=50)
    texts = ["O rio Tejo atravessa Lisboa.", "O fado é um género musical de Lisboa e de Coimbra."]
    assert engine.summarize("baseline", texts, PromptConfig()) == ["base resumo 0", "base resumo 1"]
    assert engine.summarize("tuned", texts, PromptConfig(n_words=40)) == ["tuned resumo 0", "tuned resumo 1"]
    (built,) = _StandInLLM.built  # one engine for both
    assert built["model"] == models.resolve("tiny:qwen2")
    assert built["enable_lora"] is True and built["max_lora_rank"] == 8 and built["max_loras"] == 1
    assert 50 < built["max_model_len"] < 50 + 400  # the longest prompt of these texts in the base's template, and the answer
    (_, base_params, no_lora), (_, tuned_params, lora) = _StandInLLM.asked
    assert no_lora is None and (lora.lora_name, lora.lora_int_id, lora.lora_path) == ("tuned", 1, adapter)
    assert base_params["temperature"] == 0.0 and base_params["max_tokens"] == 50 and base_params["stop_token_ids"]


def test_another_base_model_gets_its_own_engine(vllm, adapter, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    other = tmp_path / "other"
    AutoModelForCausalLM.from_pretrained(models.resolve("tiny:qwen2")).save_pretrained(other)
    AutoTokenizer.from_pretrained(models.resolve("tiny:qwen2")).save_pretrained(other)
    plan = {"tuned": generation.base_and_adapter(adapter), "reference": (str(other), None)}
    engine = vllm_engine.ScoreEngine(plan, max_new_tokens=20)
    engine.summarize("tuned", ["Um texto."], PromptConfig())
    engine.summarize("reference", ["Um texto."], PromptConfig())
    first, second = _StandInLLM.built
    assert first["enable_lora"] and "enable_lora" not in second and second["model"] == str(other)


def test_score_hands_every_model_to_the_vllm_engine(vllm, adapter, pairs_dir, tmp_path):
    cfg = load_config("smoke", ["score.engine=vllm", "score.metrics=[rouge]", "score.bootstrap_resamples=0"]).score
    means = score.run(cfg, pairs_dir, {"baseline": "tiny:qwen2", "tuned": adapter}, tmp_path)
    assert set(means) == {"baseline", "tuned"}
    assert len(_StandInLLM.built) == 1 and [lora is not None for _, _, lora in _StandInLLM.asked] == [False, True]
    predictions = __import__("pandas").read_parquet(tmp_path / "predictions.parquet")
    assert predictions["prediction_tuned"].str.startswith("tuned resumo").all()

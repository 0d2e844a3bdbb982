"""Loading any model reference the way `resumo summarize` and scoring do: adapters over their base, the registry's production model."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from resumo import generation, models, promote
from resumo.config import PromoteConfig, PromptConfig
from resumo.errors import ConfigError

pytestmark = pytest.mark.numerics  # make test-kernels reruns these on other CPU kernels

TEXTS = ["O rio Tejo atravessa Lisboa e desagua no oceano Atlântico.", "O fado é um género musical de Lisboa."]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    """A LoRA adapter over tiny:qwen2 as `resumo train` leaves it, minus the tokenizer (it comes from the base)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(models.resolve("tiny:qwen2"))
    # Random (not zero) B matrices, so the adapter changes what the model says.
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    path = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(path)
    meta = {"base_model": "tiny:qwen2", "prompt": PromptConfig(n_words=40).model_dump()}
    (path / generation.MODEL_META).write_text(json.dumps(meta))
    return path


def test_an_adapter_loads_over_its_base_with_its_prompt(adapter_dir):
    from peft import PeftModel

    loaded = generation.load(str(adapter_dir), device="cpu")
    assert isinstance(loaded.model, PeftModel)
    assert loaded.prompt == PromptConfig(n_words=40)
    assert generation.tuned_prompt(str(adapter_dir)) == PromptConfig(n_words=40)
    assert loaded.tokenizer.padding_side == "left"
    base = generation.load("tiny:qwen2", device="cpu")
    assert base.prompt is None and generation.tuned_prompt("tiny:qwen2") is None
    tuned_out = generation.summarize(loaded, TEXTS, loaded.prompt, batch_size=2, max_new_tokens=6)
    base_out = generation.summarize(base, TEXTS, loaded.prompt, batch_size=2, max_new_tokens=6)
    assert len(tuned_out) == 2 and tuned_out != base_out


def test_adapter_without_its_metadata_is_refused(adapter_dir, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(adapter_dir, bare)
    (bare / generation.MODEL_META).unlink()
    with pytest.raises(Exception, match="no resumo_model.json"):
        generation.load(str(bare), device="cpu")


def test_registry_means_the_production_model(adapter_dir, tmp_path):
    registry = str(tmp_path / "registry")
    with pytest.raises(ConfigError, match="no model has been promoted"):
        generation.resolve_ref("registry", registry)
    promote.run(PromoteConfig(registry=registry), adapter_dir, {"models": {"tuned": {"rougeLsum": 0.3, "bertscore_f1": 0.8, "not_portuguese_share": 0.0}}})
    production = generation.resolve_ref("registry", registry)
    assert production.startswith(str(tmp_path / "registry" / "models"))
    assert generation.load(production, device="cpu").prompt == PromptConfig(n_words=40)
    assert generation.resolve_ref("tiny:qwen2", registry) == "tiny:qwen2"


def test_registry_pointer_is_read_from_s3(s3):
    from resumo import storage

    storage.write_text(f"{s3}/reg/production.json", json.dumps({"version": "v1", "model": f"{s3}/reg/models/v1/model"}))
    assert generation.production_model(f"{s3}/reg") == f"{s3}/reg/models/v1/model"


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_summarize_command_with_the_registry_model(adapter_dir, tmp_path, suffix):
    from resumo.cli import app

    registry = tmp_path / "registry"
    promote.run(PromoteConfig(registry=str(registry)), adapter_dir, {"models": {"tuned": {"rougeLsum": 0.3, "bertscore_f1": 0.8, "not_portuguese_share": 0.0}}})
    source, target = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    frame = pd.DataFrame({"id": [1, 2], "text": TEXTS})
    frame.to_parquet(source) if suffix == ".parquet" else frame.to_json(source, orient="records", lines=True, force_ascii=False)
    sets = ["--set", f"promote.registry={registry}", "--set", "score.max_new_tokens=5", "--set", "score.batch_size=2"]
    result = CliRunner().invoke(app, ["summarize", "--model", "registry", "--in", str(source), "--out", str(target), *sets])
    assert result.exit_code == 0, result.output
    out = pd.read_parquet(target) if suffix == ".parquet" else pd.read_json(target, lines=True)
    assert list(out["id"]) == [1, 2] and list(out["text"]) == TEXTS
    # the same generation code and prompt (the adapter's) that scoring uses
    loaded = generation.load(str(adapter_dir), device="cpu")
    assert list(out["prediction"]) == generation.summarize(loaded, TEXTS, loaded.prompt, 2, 5)


def test_summarize_needs_a_text_column(tmp_path):
    from resumo.cli import app
    from resumo.errors import DataError

    source = tmp_path / "in.jsonl"
    source.write_text('{"body": "x"}\n')
    result = CliRunner().invoke(app, ["summarize", "--model", "tiny:qwen2", "--in", str(source), "--out", str(tmp_path / "o.jsonl")])
    assert isinstance(result.exception, DataError) and "`text`" in str(result.exception)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["static", "continuous"])
def test_each_engine_writes_the_greedy_tokens_of_the_dynamic_one(adapter_dir, engine):
    """The engines differ in how they keep the KV cache and schedule prompts, not in what greedy decoding picks:
    on the tiny model in float32 the same text comes out, from the base and from an adapter over it."""
    from resumo import wiki

    texts = [text[:400] for text in list(wiki.bundled_texts())[:5]] + TEXTS
    for ref in ("tiny:qwen2", str(adapter_dir)):
        loaded = generation.load(ref, device="cpu")
        dynamic = generation.summarize(loaded, texts, PromptConfig(), batch_size=3, max_new_tokens=24, engine="dynamic")
        assert generation.summarize(loaded, texts, PromptConfig(), batch_size=3, max_new_tokens=24, engine=engine) == dynamic
        assert len(set(dynamic)) > 1  # different articles, different answers: the comparison can fail


def test_auto_picks_the_static_cache_on_a_gpu_and_dynamic_elsewhere():
    assert generation.resolve_engine("auto", "cuda:0") == "static"
    assert generation.resolve_engine("auto", "cpu") == "dynamic"
    assert generation.resolve_engine("static", "cpu") == "static"


def test_an_unknown_engine_is_a_clear_error(adapter_dir):
    loaded = generation.load("tiny:qwen2", device="cpu")
    with pytest.raises(ConfigError, match="generation engine 'vllm' is not one of"):
        generation.summarize(loaded, TEXTS, PromptConfig(), batch_size=2, max_new_tokens=4, engine="vllm")

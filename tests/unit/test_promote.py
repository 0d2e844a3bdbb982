import json

import pytest

from resumo import promote, storage
from resumo.config import PromoteConfig
from resumo.errors import DataError


def scores(value: float) -> dict:
    return {"models": {"baseline": {"rougeLsum": 0.1}, "tuned": {"rougeLsum": value}}}


@pytest.fixture
def model_dir(tmp_path):
    path = tmp_path / "adapter"
    path.mkdir()
    (path / "adapter_config.json").write_text('{"r": 8}')
    (path / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    return path


@pytest.fixture(params=["file", "s3"])
def registry(request, tmp_path):
    return str(tmp_path / "registry") if request.param == "file" else request.getfixturevalue("s3") + "/registry"


def test_first_model_is_promoted_with_all_files_before_the_pointer(registry, model_dir):
    result = promote.run(PromoteConfig(registry=registry), model_dir, scores(0.3))
    assert result.promoted and result.production_score is None
    pointer = promote.current_production(registry)
    assert pointer["version"] == result.version and pointer["score"] == 0.3
    assert storage.list_keys(pointer["model"]) == ["adapter_config.json", "adapter_model.safetensors"]
    assert json.loads(storage.read_text(storage.join(registry, f"models/{result.version}/scores.json"))) == scores(0.3)


def test_worse_or_equal_candidate_leaves_production_untouched(registry, model_dir):
    first = promote.run(PromoteConfig(registry=registry), model_dir, scores(0.3))
    before = storage.read_bytes(storage.join(registry, "production.json"))
    for value in (0.2, 0.3):
        result = promote.run(PromoteConfig(registry=registry), model_dir, scores(value))
        assert not result.promoted and "does not beat" in result.reason
    assert storage.read_bytes(storage.join(registry, "production.json")) == before
    assert [k.split("/")[0] for k in storage.list_keys(storage.join(registry, "models")) if k.endswith("scores.json")] == [first.version]


def test_better_candidate_must_clear_the_margin(registry, model_dir):
    promote.run(PromoteConfig(registry=registry), model_dir, scores(0.30))
    cfg = PromoteConfig(registry=registry, min_improvement=0.05)
    assert not promote.run(cfg, model_dir, scores(0.34)).promoted
    result = promote.run(cfg, model_dir, scores(0.36))
    assert result.promoted and result.production_score == 0.30
    assert promote.current_production(registry)["version"] == result.version


def test_scores_without_the_metric_are_a_clear_error(tmp_path, model_dir):
    with pytest.raises(DataError, match="no 'rougeLsum' for model 'tuned'"):
        promote.run(PromoteConfig(registry=str(tmp_path)), model_dir, {"models": {}})

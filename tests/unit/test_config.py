import pytest

from resumo.config import PROFILES, PipelineConfig, load_config
from resumo.errors import ConfigError


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads_and_survives_kfp_parameters(profile):
    cfg = load_config(profile)
    assert PipelineConfig.model_validate(cfg.stage_parameters()) == cfg


def test_full_profile_keeps_the_original_study_values():
    cfg = load_config("full")
    assert cfg.train.student == "Qwen/Qwen2.5-0.5B-Instruct"
    assert (cfg.train.lora.r, cfg.train.lora.alpha, cfg.train.lora.dropout) == (64, 128, 0.05)
    assert (cfg.train.learning_rate, cfg.train.epochs, cfg.train.warmup_steps, cfg.train.weight_decay) == (2e-5, 4, 5, 0.01)
    assert cfg.train.batch_size * cfg.train.gradient_accumulation == 64
    assert cfg.train.max_length == 6000
    assert cfg.tune.space.lora_r.values == [8, 16, 32, 64]
    assert (cfg.scrape.min_tokens, cfg.scrape.max_tokens, cfg.scrape.split.seed) == (500, 4000, 42)
    assert (cfg.distill.prompt.n_words, cfg.distill.teacher.max_new_tokens) == (100, 500)
    assert cfg.distill.teacher.model == "meta-llama/Llama-3.1-8B-Instruct"


def test_overrides_apply_after_the_profile_and_parse_types():
    cfg = load_config("smoke", ["train.lora.r=16", "tune.space.lora_r.values=[2, 4]", "score.max_samples=5", "train.eval_samples=null"])
    assert cfg.train.lora.r == 16 and cfg.train.lora.alpha == 32
    assert cfg.tune.space.lora_r.values == [2, 4]
    assert cfg.score.max_samples == 5
    assert cfg.train.eval_samples is None


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.lora.r=0", r"train\.lora\.r = 0: Input should be greater than or equal to 1"),
        ("train.lora.rank=8", r"train\.lora\.rank = 8: unknown field"),
        ("distill.teacher.backend=gpt", r"distill\.teacher\.backend = 'gpt': must be 'vllm', 'openai', 'transformers' or 'extractive'"),
        ("train.lora.target_modules=[q_proj, lm_head]", r"lm_head.*tied"),
        ("scrape.split.test_fraction=0.9", r"leaves no training articles"),
        ("scrape.min_tokens=5000", r"min_tokens \(5000\) is above max_tokens"),
    ],
)
def test_bad_values_name_the_field_the_value_and_what_is_allowed(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config("smoke", [override])


def test_malformed_override_and_missing_profile():
    with pytest.raises(ConfigError, match="section.field=value"):
        load_config("smoke", ["train.lora.r"])
    with pytest.raises(ConfigError, match="neither one of"):
        load_config("nope.yaml")


def test_profile_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  epochs: 1\n")
    assert load_config(path).train.epochs == 1
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(path)


def test_a_none_that_kfp_cannot_carry_is_refused():
    # api_key_env=None (an endpoint without authentication) is valid, but its default is not
    # None: dropped from a KFP struct, it would come back as OPENAI_API_KEY.
    cfg = load_config("smoke", ["distill.teacher.api_key_env=null"])
    assert cfg.distill.teacher.api_key_env is None
    with pytest.raises(ConfigError, match="non-None default"):
        cfg.stage_parameters()

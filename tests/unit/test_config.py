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


def test_the_prompt_is_defined_once_and_every_stage_follows_it():
    cfg = load_config("smoke", ["prompt.n_words=50"])
    assert cfg.distill.prompt == cfg.train.prompt == cfg.prompt and cfg.judge.n_words == 50
    shown = cfg.display()
    assert "prompt" in shown and "prompt" not in shown["distill"] and "prompt" not in shown["train"] and "n_words" not in shown["judge"]
    with pytest.raises(ConfigError, match=r"train.prompt .* differs from prompt"):
        load_config("smoke", ["train.prompt.n_words=60"])


def test_resumo_config_shows_one_prompt_section():
    import yaml
    from typer.testing import CliRunner

    from resumo.cli import app

    shown = yaml.safe_load(CliRunner().invoke(app, ["config", "-p", "full"]).stdout)
    sections = [path for path, value in _walk(shown) if path.endswith("prompt") and isinstance(value, dict)]
    assert sections == ["prompt"] and shown["prompt"]["n_words"] == 100


def _walk(node, path=""):
    for key, value in node.items():
        yield f"{path}{key}", value
        if isinstance(value, dict):
            yield from _walk(value, f"{path}{key}.")


def test_the_storage_root_moves_the_cache_the_trial_output_and_the_registry_together():
    from resumo import katib, kube

    cfg = load_config("full", ["storage_root=s3://elsewhere/team"])
    assert (cfg.distill.cache, cfg.tune.katib.output, cfg.promote.registry) == ("s3://elsewhere/team/cache/teacher", "s3://elsewhere/team/tune", "s3://elsewhere/team/registry")
    job = katib.trial_job(cfg.tune, cfg.train, "s3://elsewhere/pairs", kube.JobTarget(cfg.cluster.gpu, "img"))
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RESUMO_TRIAL_OUT"].startswith("s3://elsewhere/team/tune/")
    # a section that sets its own keeps it; the defaults of the full profile are the old literals
    assert load_config("full", ["promote.registry=s3://other/reg"]).promote.registry == "s3://other/reg"
    full = load_config("full")
    assert (full.distill.cache, full.tune.katib.output, full.promote.registry) == ("s3://resumo/cache/teacher", "s3://resumo/tune", "s3://resumo/registry")


def test_scrape_counts_tokens_with_the_student_unless_told_otherwise():
    assert load_config("smoke").scrape.tokenizer == "tiny:qwen2"
    assert load_config("full", ["train.student=org/other"]).scrape.tokenizer == "org/other"
    assert load_config("full", ["train.student=org/other", "scrape.tokenizer=org/tok"]).scrape.tokenizer == "org/tok"


def test_cross_section_checks_name_the_fields():
    with pytest.raises(ConfigError, match="judge.candidate 'nobody' is not a model score scores"):
        load_config("smoke", ["judge.candidate=nobody"])
    with pytest.raises(ConfigError, match=r"reference_models reuses the name\(s\) \['production'\]"):
        load_config("smoke", ["score.reference_models={production: tiny:qwen2}"])
    with pytest.raises(ConfigError, match="judge.n_words .* follows the prompt"):
        load_config("smoke", ["judge.n_words=60"])
    assert load_config("smoke", ["judge.candidate=baseline"]).judge.candidate == "baseline"


def test_a_renamed_field_says_its_new_name():
    with pytest.raises(ConfigError, match="judge.bootstrap_samples = 10: replaced by judge.bootstrap_resamples: set that instead"):
        load_config("smoke", ["judge.bootstrap_samples=10"])


@pytest.mark.parametrize(("old", "new"), [("tune.katib.s3_secret", "cluster.secrets.s3"), ("tune.katib.service_account", "cluster.service_account")])
def test_trial_pods_have_no_secret_or_service_account_setting_of_their_own(old, new):
    with pytest.raises(ConfigError, match=rf"{old} = 'x': replaced by {new}: set that instead"):
        load_config("full", [f"{old}=x"])


def test_score_counts_too_short_as_the_judge_rubric_does_unless_set():
    assert load_config("smoke").score.too_short_words == load_config("smoke").judge.too_short_words == 10  # the profile sets the judge's only
    assert load_config("full", ["judge.too_short_words=25"]).score.too_short_words == 25
    assert load_config("full", ["judge.too_short_words=25", "score.too_short_words=5"]).score.too_short_words == 5

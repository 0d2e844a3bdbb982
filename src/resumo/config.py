"""Configuration: one pydantic model per stage, composed into `PipelineConfig`.

Resolution order (as in trl's `parse_args_and_config`): field defaults, which are
the original study's values, then a profile YAML (`smoke`, `full` or a path),
then `--set section.field=value` overrides. Everything is validated before any
work starts, and a bad value names its field, the value and what is allowed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from resumo.errors import ConfigError

PROFILES = ("smoke", "full")

# Qwen2.5-0.5B ties lm_head to embed_tokens; LoRA on either would unite them (DESIGN.md).
TIED_MODULES = {"lm_head", "embed_tokens"}


class Section(BaseModel):
    # extra="forbid" makes a typo (`train.lora.rank`) an error instead of a silent default.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --- scrape -----------------------------------------------------------------


class SplitConfig(Section):
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of articles in the validation split (original study: 1,000 of 5,000).")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of articles in the test split (original study: 1,000 of 5,000).")
    seed: int = Field(42, description="Seed of the split and of the token budgets; the same seed gives the same split.")

    @model_validator(mode="after")
    def _leave_room_for_train(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:g} leaves no training articles; keep the sum below 1"
            )
        return self


class ScrapeConfig(Section):
    source: Literal["dump"] = Field("dump", description="Where articles come from: `dump` is a MediaWiki XML export (pages-articles*.xml or .bz2).")
    dump: str = Field("bundled", description="Path or URI (file://, s3://) of the XML dump; `bundled` is the Portuguese sample corpus shipped with resumo.")
    min_words: int = Field(150, ge=0, description="Articles with fewer words of clean text are skipped and counted as `too_short`.")
    max_articles: int | None = Field(None, ge=1, description="Stop after this many kept articles; None keeps all.")
    tokenizer: str = Field("Qwen/Qwen2.5-0.5B-Instruct", description="Tokenizer that counts `n_tokens` and cuts texts to the token budget: the student's, so budgets are in student tokens.")
    min_tokens: int = Field(500, ge=1, description="Lower end of each article's token budget, drawn uniformly per article (original study: 500).")
    max_tokens: int = Field(4000, ge=1, description="Upper end of the token budget (original study: 4,000). Texts are cut to whole paragraphs under it.")
    split: SplitConfig = Field(default_factory=SplitConfig)

    @model_validator(mode="after")
    def _budget_is_a_range(self) -> ScrapeConfig:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) is above max_tokens ({self.max_tokens}); make min_tokens <= max_tokens")
        return self


# --- distill ----------------------------------------------------------------


class PromptConfig(Section):
    version: Literal["pt-v1"] = Field("pt-v1", description="Prompt template version; part of the teacher cache key, so a new wording is a new version.")
    n_words: int = Field(100, ge=10, le=1000, description="Most words the summary may have, said in the prompt (original study: 100).")


class TeacherConfig(Section):
    backend: Literal["vllm", "openai", "transformers", "extractive"] = Field(
        "vllm",
        description="`vllm`: offline batched generation (GPU image); `openai`: any OpenAI-compatible /v1/chat/completions endpoint (a vLLM server, KServe), set `base_url`; `transformers`: batched generate on CPU or GPU; `extractive`: lead sentences, a deterministic baseline.",
    )
    model: str = Field("meta-llama/Llama-3.1-8B-Instruct", description="Hub id, path or s3:// prefix of the teacher (original study: Llama-3.1-8B-Instruct); for `openai`, the model name the endpoint serves. Ignored by `extractive`.")
    max_new_tokens: int = Field(500, ge=1, description="Generation limit per summary (original study: 500). Greedy decoding, as in the study.")
    batch_size: int = Field(8, ge=1, description="Articles per generate call for `transformers`; vLLM schedules its own batches.")
    base_url: str | None = Field(None, description="`openai` only: the endpoint's base URL, e.g. http://teacher.kubeflow.svc:8000/v1. Required by `openai`.")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="`openai` only: name of the environment variable (on a cluster, from a Secret) that holds the API key; None for an endpoint without authentication. The key itself never goes in config.")
    concurrency: int = Field(16, ge=1, le=1024, description="`openai` only: requests in flight at once; match the server's batch capacity (vLLM's default max_num_seqs is 256).")
    timeout_s: float = Field(300.0, gt=0, description="`openai` only: seconds one request may take before it is retried; 500 greedy tokens from an 8B model on a busy server can take minutes.")
    max_retries: int = Field(3, ge=0, description="`openai` only: retries of a request after a timeout, a connection error, 429 or 5xx, with exponential backoff (the openai client's).")
    max_consecutive_failures: int = Field(32, ge=1, description="`openai` only: this many failed requests in a row mean the endpoint is down: the stage stops, keeping every summary already cached.")

    @model_validator(mode="after")
    def _openai_needs_an_endpoint(self) -> TeacherConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend `openai` needs base_url, e.g. distill.teacher.base_url=http://teacher:8000/v1")
        return self


class DistillConfig(Section):
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    min_words: int = Field(20, ge=1, description="Summaries with fewer words are kept but marked `too_short` in `filter_reason`.")
    max_words_ratio: float = Field(2.0, ge=1, description="Summaries longer than n_words x this are marked `too_long` (the study judged over 200 words bad).")
    cache: str | None = Field(None, description="URI prefix (s3://bucket/prefix or a path) of the teacher-output cache, keyed by article revision and text, teacher, prompt and generation settings; a rerun asks the teacher only for what is not there. None: no cache.")
    checkpoint_every: int = Field(256, ge=1, description="Articles per teacher call between cache writes: a crashed run loses at most this many summaries.")
    shards: int = Field(1, ge=1, le=256, description="Pipeline only: distil in this many parallel tasks (each on its own GPU), split by a hash of the article id, then merged.")


# --- train ------------------------------------------------------------------


class LoraSettings(Section):
    r: int = Field(64, ge=1, le=1024, description="LoRA rank (original study: grid over 8, 16, 32, 64; 64 won).")
    alpha_ratio: float = Field(2.0, gt=0, description="lora_alpha = alpha_ratio x r (original study: alpha = 2r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout (original study: 0.05).")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
        description="Modules that get adapters: every attention and MLP projection. Never the tied embeddings.",
    )

    @field_validator("target_modules")
    @classmethod
    def _not_tied_embeddings(cls, modules: list[str]) -> list[str]:
        tied = sorted(TIED_MODULES.intersection(modules))
        if tied:
            raise ValueError(f"{tied} are tied to each other in Qwen2.5-0.5B; remove them and target the projections only")
        return modules

    @property
    def alpha(self) -> float:
        return self.alpha_ratio * self.r


class TrainConfig(Section):
    student: str = Field("Qwen/Qwen2.5-0.5B-Instruct", description="Hub id, path or s3:// prefix of the model to tune; `tiny:qwen2` is the bundled tiny random model.")
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    learning_rate: float = Field(2e-5, gt=0, lt=1, description="Peak learning rate (original study: 2e-5).")
    lr_scheduler: Literal["linear", "cosine", "constant_with_warmup"] = Field("linear", description="Schedule after warm-up (original study: linear).")
    warmup_steps: int = Field(5, ge=0, description="Optimizer steps of linear warm-up (original study: 5).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (original study: 0.01).")
    epochs: float = Field(4, gt=0, description="Passes over the training split (original study: 4).")
    batch_size: int = Field(16, ge=1, description="Examples per device step (original study: 16).")
    gradient_accumulation: int = Field(4, ge=1, description="Steps accumulated per optimizer step; effective batch = batch_size x this (original study: 4, so 64).")
    max_length: int = Field(6000, ge=16, description="Longest prompt + summary in tokens; longer examples are truncated from the right (original study: 6,000).")
    gradient_checkpointing: bool = Field(True, description="Trade compute for memory; needed for 4k-token articles on one GPU.")
    eval_samples: int | None = Field(None, ge=1, description="Validation articles summarised to compute ROUGE-Lsum after training; None uses all (slow for 1,000 articles: cap it).")
    max_new_tokens: int = Field(256, ge=1, description="Generation limit when summarising validation articles.")
    seed: int = Field(42, description="Seed of adapter initialisation and data order.")


# --- tune -------------------------------------------------------------------


class TuneConfig(Section):
    backend: Literal["optuna"] = Field("optuna", description="`optuna`: trials run in this process (kfp.local and laptops).")
    algorithm: Literal["grid", "random", "tpe"] = Field("grid", description="Search algorithm (original study: grid over the rank).")
    lora_r: list[int] = Field(default_factory=lambda: [8, 16, 32, 64], min_length=1, description="LoRA ranks to try (original study: 8, 16, 32, 64).")
    learning_rate: list[float] | None = Field(None, description="Learning rates to try; None keeps train.learning_rate. With `grid`, every (r, lr) pair is a trial.")
    max_trials: int = Field(4, ge=1, description="Upper bound on trials; `grid` stops early when the grid is exhausted.")
    objective: Literal["rougeLsum"] = Field("rougeLsum", description="Validation metric to maximise (the original study chose r by validation scores).")

    @field_validator("lora_r")
    @classmethod
    def _positive_ranks(cls, ranks: list[int]) -> list[int]:
        bad = [r for r in ranks if r < 1]
        if bad:
            raise ValueError(f"ranks {bad} are not positive; use values such as 8, 16, 32, 64")
        return ranks


# --- score ------------------------------------------------------------------


class ScoreConfig(Section):
    rouge_tokenizer: Literal["unicode", "rouge-score"] = Field(
        "unicode",
        description="`unicode` keeps accented letters (a token is a run of letters or digits); `rouge-score` is rouge_score's default, which splits 'ação' into 'a o', as the original study's numbers did.",
    )
    bertscore_model: str = Field("bert-base-multilingual-cased", description="Encoder for BERTScore F1 (what lang='pt' picks); `tiny:bert` is the bundled tiny random one.")
    bertscore_num_layers: int | None = Field(None, ge=1, description="Encoder layer whose embeddings are compared; None uses bert-score's default for the model (9 for mBERT).")
    batch_size: int = Field(16, ge=1, description="Articles per generate call and pairs per BERTScore batch.")
    max_new_tokens: int = Field(500, ge=1, description="Generation limit per summary (the teacher's limit in the original study).")
    max_samples: int | None = Field(None, ge=1, description="Test articles scored; None scores the whole test split (original study: 1,000).")


# --- promote ----------------------------------------------------------------


class PromoteConfig(Section):
    registry: str = Field("s3://resumo/registry", description="URI prefix of the model registry: versions under models/, the production pointer in production.json.")
    metric: Literal["rougeLsum", "bertscore_f1"] = Field("rougeLsum", description="Score the candidate must beat production on.")
    min_improvement: float = Field(0.0, ge=0, description="The candidate is promoted only if metric > production's + this.")


# --- pipeline ---------------------------------------------------------------


class PipelineConfig(Section):
    scrape: ScrapeConfig = Field(default_factory=ScrapeConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    promote: PromoteConfig = Field(default_factory=PromoteConfig)


    def stage_parameters(self) -> dict[str, dict[str, Any]]:
        """Each stage's values as KFP pipeline parameters (JSON structs, which cannot hold null).

        A None is left out, which brings back the field's default; that is only
        faithful where the default is None too, so check the round trip.
        """
        params = self.model_dump(mode="json", exclude_none=True)
        if PipelineConfig.model_validate(params) != self:
            raise ConfigError("a field set to None has a non-None default, which a KFP parameter cannot express; set it to a value")
        return params


def load_config(profile: str | Path | None = "smoke", overrides: list[str] | None = None) -> PipelineConfig:
    """Defaults, then the profile (a name in PROFILES or a YAML path), then `key=value` overrides."""
    values = _read_profile(profile) if profile else {}
    for override in overrides or []:
        key, value = _parse_override(override)
        set_dotted(values, key, value)
    return validate(PipelineConfig, values)


def validate(model: type[Section], values: dict[str, Any]) -> Any:
    """Validate `values` into `model`, turning pydantic's errors into one line per field."""
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "config"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field; see `resumo config --profile smoke` for the valid keys"
        elif e["type"] == "literal_error":
            msg = f"must be {msg.removeprefix('Input should be ')}"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        lines.append(f"{field}{shown}: {msg}")
    return "invalid config: " + "; ".join(lines)


def _read_profile(profile: str | Path) -> dict[str, Any]:
    if str(profile) in PROFILES:
        text = resources.files("resumo.profiles").joinpath(f"{profile}.yaml").read_text(encoding="utf-8")
        origin = f"profile {profile!r}"
    else:
        path = Path(profile)
        if not path.is_file():
            raise ConfigError(f"profile {str(profile)!r} is neither one of {list(PROFILES)} nor a YAML file that exists")
        text, origin = path.read_text(encoding="utf-8"), str(path)
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{origin} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{origin} must be a mapping of sections (scrape:, train:, ...), not {type(values).__name__}")
    return values


def _parse_override(override: str) -> tuple[str, Any]:
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not of the form section.field=value (e.g. train.lora.r=16)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # an unparsable literal is meant as a plain string
    return key.strip(), value


def set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    node = values
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is a value, not a section")
        node = child
    node[leaf] = value

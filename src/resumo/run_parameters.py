"""Config values the compiled pipeline is built from, and the check that a run still agrees.

Most of a stage's config is read by its task at run time, so editing it in the KFP
UI's run form changes the run. A few values instead shape the compiled DAG: an image,
whether a task exists, a resource request, the variable a Secret is mounted as. Editing
one of those in the form would change nothing, silently. So the pipeline records them
when it is compiled, and its first task compares the run's values with them and stops,
before any GPU is asked for, naming the parameter, both values and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from resumo.config import DistillConfig, JudgeConfig, PromoteConfig, ScrapeConfig, TrainConfig, TuneConfig, validate
from resumo.errors import ConfigError

SECTIONS = {"scrape": ScrapeConfig, "distill": DistillConfig, "tune": TuneConfig, "train": TrainConfig, "judge": JudgeConfig, "promote": PromoteConfig}
# The run parameter that holds each stage's section: the pipeline's parameters are named so
# (pipelines/summarization.py; tests/contract/test_pipeline_spec.py keeps the two equal).
PARAMETERS = {"scrape": "s1_scrape", "distill": "s2_distill", "tune": "s3_tune", "train": "s4_train", "score": "s5_score", "judge": "s6_judge", "promote": "s7_promote"}


@dataclass(frozen=True)
class Choice:
    key: str  # dotted config key
    shapes: str  # what in the compiled pipeline it decides
    value: Callable[[Any], Any]  # from a PipelineConfig, or anything with the same section attributes


def _is_set(value: Any) -> str:
    return "set" if value else "unset"


CHOICES = (
    Choice("scrape.workers", "the scrape task's CPU request", lambda c: c.scrape.workers),
    Choice("distill.teacher.backend", "the distill shards' image and GPU request, and whether they get an API key", lambda c: c.distill.teacher.backend),
    Choice("distill.teacher.api_key_env", "the variable the shards' API key is mounted as", lambda c: c.distill.teacher.api_key_env),
    Choice(
        "distill.teacher.tensor_parallel_size",
        "the vllm shards' GPU request (unset: s9_gpu_count, read at run time)",
        lambda c: c.distill.teacher.tensor_parallel_size,
    ),
    Choice("tune.backend", "the tune task: a Katib launcher on CPU, or optuna trials on a GPU", lambda c: c.tune.backend),
    Choice("tune.retrain_best", "whether a train task follows Katib's best trial", lambda c: c.tune.retrain_best),
    Choice("train.backend", "the train task: a pod on a GPU, or a CPU launcher of a Kubeflow Trainer TrainJob", lambda c: c.train.backend),
    Choice("judge.base_url", "whether the judge task is in the pipeline (set or unset; its value is read at run time)", lambda c: _is_set(c.judge.base_url)),
    Choice("judge.api_key_env", "the variable the judge's API key is mounted as", lambda c: c.judge.api_key_env),
    Choice("promote.model_registry.url", "whether promote gets the Model Registry token (set or unset)", lambda c: _is_set(c.promote.model_registry.url)),
    Choice("promote.model_registry.token_env", "the variable the Model Registry token is mounted as", lambda c: c.promote.model_registry.token_env),
)


def compiled(cfg: Any) -> dict[str, Any]:
    """What the pipeline compiled from `cfg` is built from: dotted key -> value ("null" for None,
    which a KFP struct cannot hold)."""
    return {choice.key: _json(choice.value(cfg)) for choice in CHOICES}


def _json(value: Any) -> Any:
    return "null" if value is None else value


def _validated(name: str, values: dict, parameter_names: Mapping[str, str]):
    try:
        return validate(SECTIONS[name], values)
    except ConfigError as err:
        raise ConfigError(f"run parameter {parameter_names.get(name, name)} ({name}): {err}") from None


class _Sections:
    def __init__(self, sections: Mapping[str, Any]):
        self.__dict__.update(sections)


def check(compiled_values: Mapping[str, Any], run_sections: Mapping[str, dict], parameter_names: Mapping[str, str] = PARAMETERS) -> None:
    """Validate the run's sections and raise one ConfigError listing every compile-time value the run changed.

    `run_sections`: section name -> the run's dict for it; `parameter_names`: section name ->
    the run parameter that holds it (s2_distill), for the message.
    """
    sections = {name: _validated(name, values, parameter_names) for name, values in run_sections.items()}
    run = compiled(_Sections(sections))
    changed = [key for key, value in compiled_values.items() if key in run and run[key] != value]
    if not changed:
        return
    by_key = {choice.key: choice for choice in CHOICES}
    lines = []
    for key in changed:
        section, field = key.split(".", 1)
        lines.append(
            f"{parameter_names.get(section, section)}: {field} is {run[key]!r} in this run, but the pipeline was compiled with "
            f"{compiled_values[key]!r}, which fixed {by_key[key].shapes}"
        )
    fixes = " ".join(f"--set {key}=..." for key in changed)
    raise ConfigError(
        "this run changes values that the compiled pipeline is built from, so they would change nothing:\n  "
        + "\n  ".join(lines)
        + f"\nrecompile with them (`resumo compile {fixes}`, or `resumo submit {fixes}`), or run with the compiled values"
    )

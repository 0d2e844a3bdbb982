"""What each stage writes, by name: the one place the pipeline's file names are spelled.

A stage module writes its outputs and reads its inputs through these names;
components, the CLI, the local run and Katib trials hand a stage the folder
(a KFP artifact's path, `--out`, an S3 prefix) and never name a file inside it.

    stage    folder      holds
    scrape   articles    {train,val,test}.parquet, stats.json (and _checkpoint/ while it runs)
    distill  pairs       {train,val,test}.parquet, distill_counts.json
    train    model       adapter/ (with resumo_model.json), merged/, curves.png, metrics.json, checkpoints/
    tune     trials      best.json; trial-NNN/ and trial-reused/ (optuna, each a `model` folder) or experiment.yaml, policy.json (katib)
    katib    <tune.katib.output>/<trial>/   adapter/, metrics.json, curves.png: a `model` folder
    score    scores      scores.json, predictions.parquet, generated/<model>.json
    judge    verdicts    judge.json, verdicts.jsonl
    report   report      report.html, report.md, report_metrics.json
    promote  registry    production.json, models/<version>/{model/, scores.json, report.html, MODEL_CARD.md, manifest.json}
    run      runs/<id>   summary.json (resumo run)
"""

from __future__ import annotations

import json
from pathlib import Path

from resumo import storage
from resumo.errors import DataError

# scrape, distill: one Parquet file per split (resumo.tables)
SCRAPE_STATS = "stats.json"
SCRAPE_CHECKPOINT = "_checkpoint"
DISTILL_COUNTS = "distill_counts.json"  # beside the Parquet files: counts, including cache traffic, for the merge

# train (and each tune trial)
ADAPTER = "adapter"
MERGED = "merged"
CURVES = "curves.png"
TRAIN_METRICS = "metrics.json"
CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.json"  # the Trainer writes it last: a checkpoint without it is incomplete
ADAPTER_CONFIG = "adapter_config.json"  # peft's: a folder holding it is an adapter, not a whole model
MODEL_CONFIG = "config.json"  # transformers': a whole model's architecture
TOKENIZER_CONFIG = "tokenizer_config.json"  # transformers': a folder holding it carries its tokenizer
MODEL_META = "resumo_model.json"  # beside every tuned model: what it was tuned from and with which prompt
TRIAL_FILES = (ADAPTER, TRAIN_METRICS, CURVES)  # what a Katib trial copies out of its model folder

# tune
BEST = "best.json"
EXPERIMENT = "experiment.yaml"
TRAINJOB = "trainjob.yaml"  # beside a TrainJob-trained model: the TrainJob that trained it
TUNE_POLICY = "policy.json"  # katib: the tune.policy decision beside experiment.yaml (optuna keeps it in best.json)
REUSED_TRIAL = "trial-reused"  # optuna, tune.policy=on_regression: the one training of production's hyperparameters

# score
SCORES = "scores.json"
PREDICTIONS = "predictions.parquet"
GENERATED = "generated"

# judge
JUDGE_RESULT = "judge.json"
VERDICTS = "verdicts.jsonl"

# report
REPORT_HTML = "report.html"
REPORT_MARKDOWN = "report.md"
REPORT_METRICS = "report_metrics.json"

# promote: the registry
POINTER = "production.json"
MANIFEST = "manifest.json"
CARD = "MODEL_CARD.md"
VERSIONS = "models"
VERSION_MODEL = "model"

# resumo run
RUN_SUMMARY = "summary.json"


def split_file(split: str) -> str:
    return f"{split}.parquet"


def optuna_trial(number: int) -> str:
    return f"trial-{number:03d}"


def version_prefix(version: str) -> str:
    """A published version's key under the registry."""
    return f"{VERSIONS}/{version}"


def adapter_of(model_dir: str | Path) -> str:
    """The adapter inside a `model` folder (train's output, a tune trial's)."""
    return f"{str(model_dir).rstrip('/')}/{ADAPTER}"


def model_of(adapter: str) -> str:
    """The `model` folder an adapter URI or path lies in (adapter_of, backwards)."""
    folder, name = str(adapter).rstrip("/").rsplit("/", 1)
    if name != ADAPTER:
        raise ValueError(f"{adapter!r} does not end in /{ADAPTER}")
    return folder


def scores_file(scores: str | Path) -> str:
    """score's scores.json: given itself, or the folder score wrote."""
    return str(scores) if str(scores).endswith(".json") else storage.join(scores, SCORES)


def predictions_file(predictions: str | Path) -> str:
    """score's predictions.parquet: given itself, or the folder score wrote."""
    return str(predictions) if str(predictions).endswith(".parquet") else storage.join(predictions, PREDICTIONS)


def adapter_in(model: str | Path) -> Path:
    """The adapter to load or publish: train's folder holds it as adapter/; any other folder is one itself."""
    inner = Path(model) / ADAPTER
    return inner if inner.is_dir() else Path(model)

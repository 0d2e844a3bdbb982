"""Run the pipeline on this machine with kfp.local: the same DAG as on a cluster.

    resumo run                      # smoke profile: bundled corpus, tiny models, CPU
    resumo run --set train.epochs=2

Artifacts land under `runs/<run id>/`; the run ends by writing `summary.json`
with the baseline's and the tuned student's scores and the promotion decision.
"""

from __future__ import annotations

import builtins
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from resumo import artifacts
from resumo.config import PipelineConfig
from resumo.errors import ResumoError

log = logging.getLogger(__name__)


def run(cfg: PipelineConfig, runs_dir: str | Path = "runs") -> Path:
    from kfp import local

    from resumo.pipelines.summarization import build  # kfp's own layer, as this module

    run_dir = Path(runs_dir).resolve() / datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    # A relative registry or cache is relative to where `resumo run` was started, as a user expects.
    cfg = cfg.model_copy(
        update={
            "promote": cfg.promote.model_copy(update={"registry": _absolute(cfg.promote.registry)}),
            "distill": cfg.distill.model_copy(update={"cache": cfg.distill.cache and _absolute(cfg.distill.cache)}),
            "scrape": cfg.scrape.model_copy(update={"cache": cfg.scrape.cache and _absolute(cfg.scrape.cache)}),
            "tune": cfg.tune.model_copy(update={"registry": cfg.tune.registry and _absolute(cfg.tune.registry)}),
        }
    )
    # kfp.local honours task retries, sleeping minutes between them: here a failure should fail now.
    cfg = cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"retries": 0})})
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(run_dir / "artifacts"), raise_on_error=True)
    # kfp.local indents task logs by swapping builtins.print per task; ParallelFor tasks run
    # in threads, so the swaps interleave and an indenting print can outlive the run.
    plain_print = builtins.print
    try:
        build(cfg)()
    except RuntimeError as err:  # kfp.local names the failed task; its log is above
        raise ResumoError(f"local run failed: {err}; artifacts so far are in {run_dir}") from None
    finally:
        builtins.print = plain_print
    summary = summarize_run(run_dir / "artifacts")
    summary["cost"] = run_cost(run_dir / "artifacts", cfg)
    summary["config"] = cfg.model_dump()
    path = run_dir / artifacts.RUN_SUMMARY
    path.write_text(json.dumps(summary, indent=2))
    return path


def _absolute(uri: str) -> str:
    return uri if "://" in uri or Path(uri).is_absolute() else str(Path(uri).resolve())


def summarize_run(root: Path) -> dict:
    """Scores and promotion decision from a finished run's artifacts: kfp.local keeps each output at <run>/<task>/<output>."""
    scores = _only(root.glob(f"*/score/scores/{artifacts.SCORES}"))
    decision = _only(root.glob("*/promote/decision"))
    best = _only(root.glob(f"*/tune/trials/{artifacts.BEST}"))
    return {
        "scores": json.loads(scores.read_text())["models"],
        "tune": {k: v for k, v in json.loads(best.read_text()).items() if k != "trials"},
        "promotion": json.loads(decision.read_text()),
        "artifacts": str(root),
    }


def run_cost(root: Path, cfg: PipelineConfig) -> dict:
    """This run's cost figures beside a full run's (resumo.run_cost), from its stages' outputs."""
    from resumo import run_cost as figures

    stats = json.loads(_only(root.glob(f"*/scrape/articles/{artifacts.SCRAPE_STATS}")).read_text())["counts"]
    counts = json.loads(_only(root.glob(f"*/merge-pairs/pairs/{artifacts.DISTILL_COUNTS}")).read_text())
    policy = json.loads(_only(root.glob(f"*/tune/trials/{artifacts.BEST}")).read_text()).get("policy") or {}
    trained = json.loads(_only(root.glob(f"*/train/model/{artifacts.TRAIN_METRICS}")).read_text()).get("run") or {}
    tune_cost = figures.tune_figures(cfg.tune, policy.get("trainings", 0), policy.get("training_seconds", 0.0), cfg.cluster.gpu.count)
    return figures.run_figures(cfg, stats, counts, tune_cost, trained.get("train_seconds"))


def _only(paths) -> Path:
    found = sorted(paths)
    if len(found) != 1:
        raise ResumoError(f"expected one output, found {len(found)}: {found}")
    return found[0]

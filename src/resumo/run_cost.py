"""What a run cost, beside what a full run of the same config costs: the figures a recurring retrain is judged by.

    pages_read            pages the source gave (a full run reads them too)
    pages_cleaned         pages parsed and cut here; a full run cleans every page read (scrape.cache)
    teacher_calls         articles the teacher was asked about; a full run asks about every article (distill.cache)
    tune_trials           trainings the tune step ran; a full run runs tune.max_trials (or the grid) of them (tune.policy)
    gpu_hours_requested   hours GPUs were held: each training holds cluster.gpu.count GPUs for its wall time

Stage components log their part as KFP Metrics named `cost_<figure>` and
`cost_full_<figure>`; `resumo run` puts them all in summary.json (`cost`).
"""

from __future__ import annotations

from resumo.config import TuneConfig


def scrape_figures(counts: dict) -> dict[str, int]:
    read = int(counts.get("seen", 0))
    full = read + int(counts.get("carried_over", 0))  # the API source read only what changed; a full run reads every page
    return {"cost_pages_read": read, "cost_pages_cleaned": int(counts.get("cleaned", read)), "cost_full_pages_read": full, "cost_full_pages_cleaned": full}


def distill_figures(counts: dict) -> dict[str, int]:
    return {"cost_teacher_calls": int(counts.get("teacher_answers", 0)), "cost_full_teacher_calls": int(counts.get("articles", 0))}


def tune_figures(cfg: TuneConfig, trainings: int, seconds: float, gpu_count: int) -> dict[str, float]:
    """The tune step's trainings and GPU-hours; the full run's GPU-hours are estimated from this run's
    hours per training, so they are left out when nothing was trained here (reuse under optuna)."""
    full_trials = cfg.space.trial_count(cfg.search, cfg.algorithm, cfg.max_trials)
    figures = {"cost_tune_trials": trainings, "cost_full_tune_trials": full_trials, "cost_gpu_hours_requested": round(seconds / 3600 * gpu_count, 6)}
    if trainings:
        figures["cost_full_gpu_hours_requested"] = round(seconds / trainings * full_trials / 3600 * gpu_count, 6)
    return figures


def run_figures(cfg, scrape_counts: dict, distill_counts: dict, tune_cost: dict, train_seconds: float | None) -> dict[str, dict]:
    """The whole run's figures, this run and full, for summary.json: the train step adds its own training
    to both (a Katib run that hands on its best trial trains nothing there: `train_seconds` None)."""
    figures = {**scrape_figures(scrape_counts), **distill_figures(distill_counts)}
    figures |= {k: tune_cost[k] for k in ("cost_tune_trials", "cost_full_tune_trials") if k in tune_cost}
    gpus = cfg.cluster.gpu.count
    train_hours = (train_seconds or 0) / 3600 * gpus
    tune_hours = float(tune_cost.get("cost_gpu_hours_requested", 0))
    # Per training, this run's train step is the measure a full run's trials are estimated with.
    per_training = tune_hours / tune_cost["cost_tune_trials"] if tune_cost.get("cost_tune_trials") else train_hours
    figures["cost_gpu_hours_requested"] = round(tune_hours + train_hours, 6)
    figures["cost_full_gpu_hours_requested"] = round(per_training * int(figures.get("cost_full_tune_trials", 0)) + train_hours, 6)
    this_run = {k.removeprefix("cost_"): v for k, v in figures.items() if not k.startswith("cost_full_")}
    full_run = {k.removeprefix("cost_full_"): v for k, v in figures.items() if k.startswith("cost_full_")}
    return {"this_run": this_run, "full_run": full_run}

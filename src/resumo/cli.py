"""The `resumo` command line: every stage, the local run and compilation.

Each stage command takes the same config as the pipeline: defaults, then
`--profile` (smoke, full or a YAML path), then `--set section.field=value`.
User errors print one line and exit 2; there is no traceback to read.
Every path option takes what resumo.storage takes: a path, file:// or s3://;
a stage that needs a local folder gets a temporary one, filled from and
uploaded to the s3:// prefix.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from resumo.errors import ResumoError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__.split("\n")[0])

Profile = Annotated[str, typer.Option("--profile", "-p", help="smoke, full, or a YAML file of config values.")]
Sets = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a value: --set train.lora.r=16 (repeatable).")]
OutDir = Annotated[str, typer.Option("--out", "-o", help="Output folder: a path, file:// or s3://.")]
RunId = Annotated[
    str | None,
    typer.Option("--run-id", help="The pipeline run this is part of: checkpoints are also kept under <checkpoint_store>/<run id>/, so a rerun with it resumes in an empty --out."),
]


def _config(profile: str, sets: list[str] | None, flags: dict[str, object] | None = None):
    """The config of `profile` with the --set overrides, then each option `flags` maps a key to (None: not given) as one more."""
    from resumo.config import load_config

    return load_config(profile, (sets or []) + [f"{key}={value}" for key, value in (flags or {}).items() if value is not None])


@app.command("config")
def show_config(profile: Profile = "smoke", sets: Sets = None) -> None:
    """Print the resolved config as YAML.  Example: resumo config -p full --set train.lora.r=16"""
    import yaml

    typer.echo(yaml.safe_dump(_config(profile, sets).display(), sort_keys=False, allow_unicode=True))


@app.command()
def scrape(
    out: OutDir,
    source: Annotated[str | None, typer.Option(help="dump, api or parquet; default: scrape.source.")] = None,
    dump: Annotated[str | None, typer.Option(help="MediaWiki XML dump (path, file:// or s3://); default: scrape.dump.")] = None,
    parquet: Annotated[str | None, typer.Option(help="wikimedia/wikipedia Parquet file or folder (path or s3://); default: scrape.parquet.")] = None,
    run_id: RunId = None,
    profile: Profile = "smoke",
    sets: Sets = None,
) -> None:
    """Articles from a dump, the MediaWiki API or a Parquet snapshot, cleaned and split; rerun with the same --out to resume.
    Example: resumo scrape --source dump --dump ptwiki-latest-pages-articles.xml.bz2 --out runs/articles"""
    out = _uri(out, "--out")  # before the heavy imports: a refused value fails at once
    from resumo import scrape as stage

    cfg = _config(profile, sets, {"scrape.source": source, "scrape.dump": dump, "scrape.parquet": parquet})
    result = stage.run(cfg.scrape, out, run_id)
    typer.echo(json.dumps({"counts": result.counts, "splits": result.splits}))


@app.command()
def distill(
    articles: Annotated[str, typer.Option(help="Folder written by `resumo scrape` (path or s3://).")],
    out: OutDir,
    profile: Profile = "smoke",
    sets: Sets = None,
    shard: Annotated[int | None, typer.Option(help="Only this shard of distill.shards, as one pipeline task does (to debug it); default: every article.")] = None,
) -> None:
    """Teacher summaries for every article.  Example: resumo distill --articles runs/articles --out runs/pairs"""
    from resumo import distill as stage

    cfg = _config(profile, sets).distill
    articles, out = _uri(articles, "--articles"), _uri(out, "--out")
    counts = stage.run(cfg, articles, out).counts if shard is None else stage.run_stage(cfg, articles, out, shard).outputs["counts"]
    typer.echo(json.dumps(counts))


@app.command()
def train(
    pairs: Annotated[str, typer.Option(help="Folder written by `resumo distill` (path or s3://).")],
    out: OutDir,
    run_id: RunId = None,
    profile: Profile = "smoke",
    sets: Sets = None,
    nproc_per_node: Annotated[int | None, typer.Option("--nproc-per-node", help="Processes under torchrun, one per GPU; default: train.nproc_per_node, else the visible CUDA GPUs, else 1.")] = None,
    backend: Annotated[str | None, typer.Option(help="pod (train here) or trainjob (a Kubeflow Trainer TrainJob over train.trainjob.num_nodes nodes); default: train.backend.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="trainjob: write the TrainJob YAML to --out and create nothing.")] = False,
) -> None:
    """LoRA-tune the student; rerun with the same --out (or --run-id) to resume.  Example: resumo train --pairs runs/pairs --out runs/model --set train.merge=true
    On a cluster: resumo train --backend trainjob --dry-run --pairs s3://resumo/pairs --out trainjob.yaml -p full"""
    pairs, out = _uri(pairs, "--pairs"), _uri(out, "--out")  # before the heavy imports
    from resumo import artifacts, distributed, launch, storage
    from resumo.errors import ConfigError

    full = _config(profile, sets, {"train.nproc_per_node": nproc_per_node, "train.backend": backend})
    cfg = full.train
    if cfg.backend == "trainjob":
        from resumo import kube, trainjob
        from resumo.images import TRAIN_IMAGE

        target = kube.JobTarget(full.cluster.gpu, TRAIN_IMAGE, run_id, full.cluster)
        if dry_run:
            body = trainjob.render(cfg, pairs, target)
            storage.write_text(out, kube.to_yaml(body))
            typer.echo(f"TrainJob {body['metadata']['name']} -> {out} (apply with: kubectl create -f {out})")
            return
        with _local_folder(out, "--out") as folder:
            trainjob.run(cfg, pairs, folder, target)
        typer.echo(f"adapter: {storage.join(out, artifacts.ADAPTER)}")
        return
    if dry_run:
        raise ConfigError("--dry-run renders the TrainJob; add --backend trainjob")
    with _local_folder(out, "--out") as folder:
        launch.train(cfg, pairs, folder, run_id)
        merged = (folder / artifacts.MERGED).exists()
    if not distributed.is_main():  # under a TrainJob's torchrun: rank 0 says where the model is
        return
    typer.echo(f"adapter: {storage.join(out, artifacts.ADAPTER)}")
    if merged:
        typer.echo(f"merged model: {storage.join(out, artifacts.MERGED)}")


@app.command()
def tune(
    pairs: Annotated[str, typer.Option(help="Folder or s3:// URI written by `resumo distill`; Katib trial pods need the s3:// URI.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (trials or experiment.yaml, and best.json); with --dry-run, the Experiment YAML file. A path, file:// or s3://.")],
    backend: Annotated[str | None, typer.Option(help="optuna (trials in this process) or katib (a Katib Experiment); default: tune.backend.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="katib: write the Experiment YAML to --out and create nothing.")] = False,
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", help="katib: the pipeline run this search belongs to; names the Experiment, so launching again with it waits on the same one. Default: a fresh name."),
    ] = None,
    profile: Profile = "smoke",
    sets: Sets = None,
) -> None:
    """Search LoRA hyperparameters.  Example: resumo tune --backend katib --dry-run --pairs s3://resumo/pairs --out experiment.yaml"""
    from resumo.errors import ConfigError

    from resumo import storage

    cfg = _config(profile, sets, {"tune.backend": backend})
    pairs = _uri(pairs, "--pairs")
    if cfg.tune.backend == "optuna":
        if dry_run:
            raise ConfigError("--dry-run renders the Katib Experiment; add --backend katib")
        from resumo import tune_policy

        with _local_folder(out, "--out") as folder:
            result, decision = tune_policy.run(cfg.tune, cfg.train, pairs, folder)
        typer.echo(json.dumps({"best_params": result.best_params, cfg.tune.objective: result.best_score, "adapter": str(result.best_adapter), "policy": decision.reason}))
        return
    from resumo import katib, kube
    from resumo.images import TRAIN_IMAGE

    target = kube.JobTarget(cfg.cluster.gpu, TRAIN_IMAGE, run_id, cfg.cluster)
    if dry_run:
        body = katib.render(cfg.tune, cfg.train, pairs, target)
        storage.write_text(_uri(out, "--out"), kube.to_yaml(body))
        typer.echo(f"Katib Experiment {body['metadata']['name']} -> {out} (apply with: kubectl create -f {out})")
        return
    from resumo import tune_policy

    with _local_folder(out, "--out") as folder:
        result, decision, _ = tune_policy.run_katib(cfg.tune, cfg.train, pairs, folder, target)
    typer.echo(json.dumps({"best_params": result.best_params, cfg.tune.objective: result.best_score, "adapter": result.best_adapter, "policy": decision.reason}))


@app.command()
def score(
    pairs: Annotated[
        str,
        typer.Option(help="With --model: a folder written by `resumo distill`, whose test split each model summarises. Without: a .jsonl or .parquet file of `prediction`, `reference` (and optionally `text`) rows, scored as they are."),
    ],
    out: Annotated[str, typer.Option("--out", "-o", help="With --model: the output folder (scores.json, predictions.parquet). Without: the JSON file to write.")],
    model: Annotated[
        list[str] | None,
        typer.Option(help="NAME=REF: a hub id, path, s3:// prefix, adapter folder or `registry` (the production model); repeatable. score.reference_models are added."),
    ] = None,
    metric_groups: Annotated[
        list[str] | None, typer.Option("--metrics", help="Metric groups to compute: rouge, bertscore, stats (repeatable or comma-separated); default: score.metrics.")
    ] = None,
    rouge_tokenizer: Annotated[str | None, typer.Option("--rouge-tokenizer", help="unicode or rouge-score; default: score.rouge_tokenizer.")] = None,
    profile: Profile = "smoke",
    sets: Sets = None,
) -> None:
    """Score models on the test split, or a file of prediction/reference pairs.

    Example: resumo score --pairs runs/pairs --model baseline=tiny:qwen2 --model tuned=runs/model/adapter --out runs/score

    Example: resumo score --pairs pairs.jsonl --out scores.json --metrics rouge --rouge-tokenizer rouge-score
    """
    from resumo import report, storage
    from resumo import score as stage
    from resumo.errors import ConfigError

    groups = json.dumps([g.strip() for m in metric_groups for g in m.split(",") if g.strip()]) if metric_groups else None
    cfg = _config(profile, sets, {"score.rouge_tokenizer": rouge_tokenizer, "score.metrics": groups})
    loc = storage.parse(_uri(pairs, "--pairs"))
    is_file = not Path(loc.key).is_dir() if loc.scheme == "file" else loc.key.endswith((".jsonl", ".json", ".parquet"))
    if not model:
        if not is_file:
            raise ConfigError(f"--pairs {pairs} is a folder: name the models to summarise its test split with --model NAME=REF, or pass a .jsonl/.parquet file of pairs")
        with _local_file(pairs, "--pairs", read=True) as pairs_file, _local_file(out, "--out") as out_file:
            scores = stage.run_pairs(cfg.score, pairs_file, out_file, cfg.prompt)
        typer.echo(json.dumps(scores, indent=2))
        return
    if is_file:
        raise ConfigError(f"--model needs --pairs to be a folder written by `resumo distill`; {pairs} is not one (to score a file of pairs, drop --model)")
    with _local_folder(out, "--out") as folder:
        result = stage.run_stage(cfg.score, cfg.promote, pairs, dict(map(_name_ref, model)), folder)
    typer.echo(report.render_markdown(result.outputs["scores"]))


@app.command()
def judge(
    predictions: Annotated[str, typer.Option(help="The folder `resumo score` wrote, or its predictions.parquet (path or s3://).")],
    out: OutDir,
    pairs: Annotated[str | None, typer.Option(help="Folder written by `resumo distill`: the article texts, joined by id.")] = None,
    profile: Profile = "smoke",
    sets: Sets = None,
) -> None:
    """LLM judge, candidate vs each model.  Example: resumo judge --predictions runs/score --pairs runs/pairs --out runs/judge --set judge.base_url=http://localhost:8000/v1"""
    from resumo import judge as stage

    cfg = _config(profile, sets).judge
    with _local_folder(out, "--out") as folder:
        result = stage.run_stage(cfg, _uri(predictions, "--predictions"), folder, pairs and _uri(pairs, "--pairs"))
    typer.echo(json.dumps({name: {k: r[k] for k in ("win_rate", "interval", "n_articles", "invalid_verdicts")} for name, r in result.outputs["judged"]["opponents"].items()}))


@app.command()
def summarize(
    model: Annotated[str, typer.Option(help="Hub id, path, s3:// prefix, adapter folder (loaded over its base), or `registry`: the production model of promote.registry.")],
    input_file: Annotated[str, typer.Option("--in", help="JSONL or Parquet with a `text` column (path or s3://).")],
    output_file: Annotated[str, typer.Option("--out", help="Where to write the input rows with the summaries added (.jsonl or .parquet; path or s3://).")],
    column: Annotated[
        str,
        typer.Option("--column", help="Name of the column the summaries go in; it must not be a column of the input (a `summary` column of references stays untouched)."),
    ] = "prediction",
    profile: Profile = "smoke",
    sets: Sets = None,
) -> None:
    """Summarise texts with any model, asked as it was tuned (a model not ours gets `prompt`).

    Example: resumo summarize --model registry --in a.jsonl --out s.jsonl

    Then `resumo score --pairs s.jsonl --out scores.json` scores them, if the rows also have a `reference` column
    (e.g. --column prediction on a file of text and reference).
    """
    from resumo import score as stage

    cfg = _config(profile, sets)
    with _local_file(input_file, "--in", read=True) as in_path, _local_file(output_file, "--out") as out_path:
        result = stage.summarize_file(cfg, model, in_path, out_path, column, source=input_file)
        if result.guard is not None:
            typer.echo(result.guard, err=True)
    typer.echo(f"{result.rows} summaries in column {column!r} -> {output_file}")


@app.command()
def promote(
    model: Annotated[str, typer.Option(help="The tuned model to publish: the folder `resumo train` wrote, or its adapter folder (path or s3://).")],
    scores: Annotated[str, typer.Option(help="The folder `resumo score` wrote, or its scores.json (path or s3://).")],
    candidate: Annotated[str, typer.Option(help="Name of the candidate in scores.json.")] = "tuned",
    report: Annotated[str | None, typer.Option(help="report.html to publish with the version (path or s3://).")] = None,
    version: Annotated[str | None, typer.Option(help="Version id; ids must sort in time order (default: now, UTC).")] = None,
    profile: Profile = "smoke",
    sets: Sets = None,
) -> None:
    """Publish the model to the registry if it passes the gates against production.  Example: resumo promote --model runs/model --scores runs/score"""
    import dataclasses
    from contextlib import nullcontext

    from resumo import promote as stage

    cfg = _config(profile, sets).promote
    with _local_file(model, "--model", read=True) as model_dir, (_local_file(report, "--report", read=True) if report else nullcontext()) as page:
        result = stage.run_stage(cfg, model_dir, _uri(scores, "--scores"), report_html=page, candidate=candidate, version=version)
    typer.echo(json.dumps(dataclasses.asdict(result.outputs["decision"])))


@app.command("report")
def report_stage(
    scores: Annotated[str, typer.Option(help="The folder `resumo score` wrote (path or s3://).")],
    model: Annotated[str, typer.Option(help="The folder `resumo train` wrote: its curves.png goes in the page.")],
    out: OutDir,
    judge: Annotated[str | None, typer.Option(help="The folder `resumo judge` wrote: its win rates go in the pages.")] = None,
    store: Annotated[str | None, typer.Option(help="Also store the pages and report_metrics.json under this prefix (path or s3://).")] = None,
) -> None:
    """The scoring report: an HTML page and a Markdown summary; prints every scalar as JSON.
    Example: resumo report --scores runs/score --model runs/model --judge runs/judge --out runs/report"""
    from contextlib import nullcontext

    from resumo import artifacts
    from resumo import report as stage

    with (
        _local_file(scores, "--scores", read=True) as scores_dir,
        _local_file(model, "--model", read=True) as model_dir,
        (_local_file(judge, "--judge", read=True) if judge else nullcontext()) as judge_dir,
        _local_folder(out, "--out") as folder,
    ):
        result = stage.run_stage(scores_dir, model_dir, folder / artifacts.REPORT_HTML, folder / artifacts.REPORT_MARKDOWN, judge_dir, store and _uri(store, "--store"))
    typer.echo(json.dumps(result.metrics))


registry_app = typer.Typer(no_args_is_help=True, help="Versions and production: resumo's registry (promote.registry), and Kubeflow Model Registry when promote.model_registry.url is set.")
app.add_typer(registry_app, name="registry")


@registry_app.command("list")
def registry_list(profile: Profile = "smoke", sets: Sets = None) -> None:
    """Every version, newest first: production, published or incomplete in resumo's registry, and in Model Registry.
    Example: resumo registry list --set promote.registry=s3://resumo/registry"""
    from resumo import model_registry

    cfg = _config(profile, sets).promote
    rows = model_registry.listing(cfg)
    typer.echo(f"{'version':26}  {'resumo':10}  model registry ({cfg.model_registry.model_name} at {cfg.model_registry.url})" if cfg.model_registry.url else f"{'version':26}  resumo")
    for row in rows:
        line = f"{row['version']:26}  {row['resumo']:10}"
        if cfg.model_registry.url:
            mr = row["model_registry"]
            line += "  not registered" if mr is None else f"  id {mr['id']}, {mr['state']}" + (", label production" if mr["production"] else "")
        typer.echo(line)
    if not rows:
        typer.echo(f"no versions in {cfg.registry}")


@registry_app.command("show")
def registry_show(
    version: Annotated[str, typer.Argument(help="A version id, as `resumo registry list` shows it.")],
    profile: Profile = "smoke",
    sets: Sets = None,
) -> None:
    """One version as JSON: resumo's model, card, scores and lineage, and Model Registry's id, label, artifact and storage URI.
    Example: resumo registry show 20260101T000000000000Z"""
    from resumo import model_registry

    typer.echo(json.dumps(model_registry.describe(_config(profile, sets).promote, version), indent=2))


@app.command("compile")
def compile_pipeline(
    output: Annotated[str, typer.Option("--output", help="Pipeline YAML to write (path or s3://).")],
    profile: Profile = "full",
    sets: Sets = None,
) -> None:
    """Validate the config and compile the pipeline for a cluster.  Example: resumo compile --output resumo.yaml"""
    from resumo.pipelines import cluster

    cfg = _config(profile, sets)
    with _local_file(output, "--output") as path:
        cluster.compile_to(cfg, path)
    typer.echo(f"compiled pipeline -> {output}")


# Where to find Kubeflow: sugar for --set cluster.host=... etc., so they validate with the rest.
Host = Annotated[str | None, typer.Option("--host", help="KFP API URL, e.g. https://kubeflow.example.com/pipeline (cluster.host); unset: in-cluster, then kubeconfig.")]
Namespace = Annotated[str | None, typer.Option("--namespace", help="Kubeflow profile namespace (cluster.namespace); unset for single-user KFP.")]
Experiment = Annotated[str | None, typer.Option("--experiment", help="Experiment to file runs under (cluster.experiment).")]
TokenEnv = Annotated[str | None, typer.Option("--token-env", help="Environment variable with a bearer token (cluster.token_env, default KF_PIPELINES_TOKEN).")]


def _cluster_config(profile: str, sets: list[str] | None, host, namespace, experiment, token_env):
    return _config(profile, sets, {"cluster.host": host, "cluster.namespace": namespace, "cluster.experiment": experiment, "cluster.token_env": token_env})


@app.command()
def submit(
    host: Host = None,
    namespace: Namespace = None,
    experiment: Experiment = None,
    token_env: TokenEnv = None,
    run_name: Annotated[str | None, typer.Option(help="Run name in the UI; default: pipeline name and run date.")] = None,
    run_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD the run reads the world as of; default: today (UTC).")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Poll the run until it ends, printing state changes.")] = False,
    profile: Profile = "full",
    sets: Sets = None,
) -> None:
    """Run on Kubeflow: compile, upload a version, start it.  Example: resumo submit --host https://kubeflow.example.com/pipeline --set train.lora.r=16"""
    from resumo.pipelines import cluster

    cfg = _cluster_config(profile, sets, host, namespace, experiment, token_env)
    if run_date is not None:
        _check_date(run_date)
    client = cluster.connect(cfg.cluster)
    submitted = cluster.submit(cfg, run_name, run_date, client=client)
    typer.echo(f"run {submitted.run_id}: {submitted.url}")
    if follow:
        for line in cluster.follow(cfg.cluster, client, submitted.run_id):
            typer.echo(line)


@app.command()
def runs(
    host: Host = None,
    namespace: Namespace = None,
    experiment: Experiment = None,
    token_env: TokenEnv = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="Most recent runs to list.")] = 10,
    follow: Annotated[str | None, typer.Option("--follow", help="RUN_ID to poll until it ends, printing state changes.")] = None,
    interval: Annotated[float, typer.Option(min=0, help="Seconds between polls with --follow.")] = 30,
    profile: Profile = "full",
    sets: Sets = None,
) -> None:
    """List the experiment's runs, or follow one.  Example: resumo runs --host https://kubeflow.example.com/pipeline --follow RUN_ID"""
    from resumo.pipelines import cluster

    cfg = _cluster_config(profile, sets, host, namespace, experiment, token_env)
    client = cluster.connect(cfg.cluster)
    if follow:
        for line in cluster.follow(cfg.cluster, client, follow, interval=interval):
            typer.echo(line)
        return
    for run in cluster.list_runs(cfg.cluster, client, limit):
        typer.echo(f"{run.created_at:16}  {run.state:10}  {run.name}  {run.url}")


@app.command()
def schedule(
    cron: Annotated[str | None, typer.Option("--cron", help='Six fields, seconds first, UTC: "0 0 3 * * 1" is Mondays 03:00.')] = None,
    name: Annotated[str | None, typer.Option(help="Recurring run name in the UI; default: '<pipeline> retrain'.")] = None,
    list_all: Annotated[bool, typer.Option("--list", help="List the experiment's recurring runs.")] = False,
    delete: Annotated[str | None, typer.Option("--delete", help="RECURRING_RUN_ID to delete.")] = None,
    host: Host = None,
    namespace: Namespace = None,
    experiment: Experiment = None,
    token_env: TokenEnv = None,
    profile: Profile = "full",
    sets: Sets = None,
) -> None:
    """Create (--cron), list (--list) or delete (--delete ID) recurring retrains.  Example: resumo schedule --host https://kubeflow.example.com/pipeline --cron '0 0 3 * * 1'"""
    from resumo.pipelines import cluster
    from resumo.errors import ConfigError

    if sum([cron is not None, list_all, delete is not None]) != 1:
        raise ConfigError("give exactly one of --cron, --list or --delete ID")
    cfg = _cluster_config(profile, sets, host, namespace, experiment, token_env)
    if cron is not None:
        cron = cluster.validate_cron(cron)  # before connecting: a bad cron sends nothing
    client = cluster.connect(cfg.cluster)
    if list_all:
        for job in cluster.list_schedules(cfg.cluster, client):
            trigger = job.trigger.cron_schedule.cron if job.trigger and job.trigger.cron_schedule else ""
            typer.echo(f"{job.recurring_run_id}  {job.status or '':8}  {trigger:15}  {job.display_name}")
    elif delete is not None:
        cluster.delete_schedule(cfg.cluster, client, delete)
        typer.echo(f"deleted recurring run {delete}")
    else:
        job = cluster.schedule(cfg, cron, name, client=client)
        typer.echo(f"recurring run {job.recurring_run_id}: {cron!r} (UTC), one at a time, no catch-up")


def _check_date(text: str) -> None:
    from datetime import date

    from resumo.errors import ConfigError

    try:
        date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--run-date {text!r} is not a date; use YYYY-MM-DD, e.g. 2026-01-31") from None


@app.command("run")
def run_local(
    profile: Profile = "smoke",
    sets: Sets = None,
    runs_dir: Annotated[str, typer.Option(help="Where runs are kept: a local folder (kfp.local's pipeline root).")] = "runs",
) -> None:
    """Run the whole pipeline here with kfp.local.  Example: resumo run --set train.epochs=2"""
    from resumo import storage
    from resumo.errors import ConfigError

    if storage.parse(_uri(runs_dir, "--runs-dir")).scheme != "file":
        raise ConfigError(f"--runs-dir {runs_dir}: kfp.local keeps artifacts in a local folder; give a path (storage_root can be s3://)")
    from resumo.pipelines import local

    path = local.run(_config(profile, sets), storage.parse(runs_dir).key)
    summary = json.loads(path.read_text())
    for name, values in summary["scores"].items():
        typer.echo(f"{name:>9}: ROUGE-Lsum {values['rougeLsum']:.4f}  BERTScore F1 {values['bertscore_f1']:.4f}")
    typer.echo(f"promotion: {summary['promotion']['reason']}")
    typer.echo(f"run summary: {path}")


def _uri(value: str, option: str) -> str:
    """`value` if storage takes it (a path, file:// or s3://); else one line naming the option."""
    from resumo import storage
    from resumo.errors import ConfigError, StorageError

    try:
        storage.parse(value)
    except StorageError as err:
        raise ConfigError(f"{option} {err}") from None
    return value


@contextmanager
def _local_folder(uri: str, option: str) -> Iterator[Path]:
    """An output folder here for a stage that writes local files; an s3:// one is uploaded when the stage succeeds."""
    from resumo import storage

    with storage.local_output(_uri(uri, option)) as folder:
        yield folder


@contextmanager
def _local_file(uri: str, option: str, read: bool = False) -> Iterator[Path]:
    """A local path for `uri`: an input downloaded (read=True), or an output file written to `uri` afterwards."""
    import tempfile

    from resumo import storage

    loc = storage.parse(_uri(uri, option))
    if read:
        with storage.local_input(uri) as path:
            yield path
    elif loc.scheme == "file":
        Path(loc.key).parent.mkdir(parents=True, exist_ok=True)
        yield Path(loc.key)
    else:
        with tempfile.TemporaryDirectory(prefix="resumo-out-") as tmp:
            path = Path(tmp) / Path(loc.key).name
            yield path
            storage.upload(path, uri)


def _name_ref(text: str) -> tuple[str, str]:
    from resumo.errors import ConfigError

    name, sep, ref = text.partition("=")
    if not sep or not name or not ref:
        raise ConfigError(f"--model {text!r} is not NAME=REF (e.g. tuned=runs/model/adapter)")
    return name, ref


def main() -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False, console=None)])
    # boto3 announces at INFO where it found credentials, on every command that touches S3.
    logging.getLogger("botocore.credentials").setLevel(logging.WARNING)
    try:
        app()
    except ResumoError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        sys.exit(2)

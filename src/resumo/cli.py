"""The `resumo` command line: every stage, the local run and compilation.

Each stage command takes the same config as the pipeline: defaults, then
`--profile` (smoke, full or a YAML path), then `--set section.field=value`.
User errors print one line and exit 2; there is no traceback to read.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from resumo.errors import ResumoError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__.split("\n")[0])

Profile = Annotated[str, typer.Option("--profile", "-p", help="smoke, full, or a YAML file of config values.")]
Sets = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a value: --set train.lora.r=16 (repeatable).")]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]


def _config(profile: str, sets: list[str] | None):
    from resumo.config import load_config

    return load_config(profile, sets)


@app.command("config")
def show_config(profile: Profile = "smoke", sets: Sets = None) -> None:
    """Print the resolved config as YAML.  Example: resumo config -p full --set train.lora.r=16"""
    import yaml

    typer.echo(yaml.safe_dump(_config(profile, sets).model_dump(), sort_keys=False, allow_unicode=True))


@app.command()
def scrape(
    out: OutDir,
    dump: Annotated[str | None, typer.Option(help="MediaWiki XML dump (path, file:// or s3://); default: scrape.dump.")] = None,
    profile: Profile = "smoke",
    sets: Sets = None,
) -> None:
    """Articles from a dump, cleaned and split.  Example: resumo scrape --out runs/articles"""
    from resumo import scrape as stage

    cfg = _config(profile, (sets or []) + ([f"scrape.dump={dump}"] if dump else []))
    result = stage.run(cfg.scrape, out)
    typer.echo(json.dumps({"counts": result.counts, "splits": result.splits}))


@app.command()
def distill(
    articles: Annotated[Path, typer.Option(help="Folder written by `resumo scrape`.")],
    out: OutDir,
    profile: Profile = "smoke",
    sets: Sets = None,
    shard: Annotated[int | None, typer.Option(help="Only this shard of distill.shards, as one pipeline task does (to debug it); default: every article.")] = None,
) -> None:
    """Teacher summaries for every article.  Example: resumo distill --articles runs/articles --out runs/pairs"""
    from resumo import distill as stage

    cfg = _config(profile, sets).distill
    result = stage.run(cfg, articles, out) if shard is None else stage.run_shard(cfg, articles, out, shard)
    typer.echo(json.dumps(result.counts))


@app.command()
def train(
    pairs: Annotated[Path, typer.Option(help="Folder written by `resumo distill`.")],
    out: OutDir,
    profile: Profile = "smoke",
    sets: Sets = None,
) -> None:
    """LoRA-tune the student; rerun with the same --out to resume.  Example: resumo train --pairs runs/pairs --out runs/model"""
    from resumo import train as stage

    result = stage.run(_config(profile, sets).train, pairs, out)
    typer.echo(f"adapter: {result.adapter_dir}")


@app.command()
def tune(
    pairs: Annotated[Path, typer.Option(help="Folder written by `resumo distill`.")],
    out: OutDir,
    profile: Profile = "smoke",
    sets: Sets = None,
) -> None:
    """Search LoRA hyperparameters.  Example: resumo tune --pairs runs/pairs --out runs/tune"""
    from resumo import tune as stage

    cfg = _config(profile, sets)
    result = stage.run(cfg.tune, cfg.train, pairs, out)
    typer.echo(json.dumps({"best_params": result.best_params, cfg.tune.objective: result.best_score, "adapter": str(result.best_adapter)}))


@app.command()
def score(
    pairs: Annotated[Path, typer.Option(help="Folder written by `resumo distill`; its test split is scored.")],
    model: Annotated[list[str], typer.Option(help="NAME=REF: a hub id, path, s3:// prefix or adapter folder (repeatable).")],
    out: OutDir,
    profile: Profile = "smoke",
    sets: Sets = None,
) -> None:
    """Score models on the test split.  Example: resumo score --pairs runs/pairs --model base=tiny:qwen2 --model tuned=runs/model/adapter --out runs/score"""
    from resumo import score as stage

    stage.run(_config(profile, sets).score, pairs, dict(_name_ref(m) for m in model), out)
    typer.echo((out / "report.md").read_text())


@app.command()
def summarize(
    model: Annotated[str, typer.Option(help="Hub id, path, s3:// prefix or adapter folder.")],
    input_file: Annotated[Path, typer.Option("--in", help="JSONL or Parquet with a `text` column.")],
    output_file: Annotated[Path, typer.Option("--out", help="Where to write the rows with a `summary` column (.jsonl or .parquet).")],
    profile: Profile = "smoke",
    sets: Sets = None,
) -> None:
    """Summarise texts with any model, asked as it was tuned.  Example: resumo summarize --model runs/model/adapter --in a.jsonl --out s.jsonl"""
    import pandas as pd

    from resumo import generation
    from resumo.errors import DataError

    cfg = _config(profile, sets)
    df = pd.read_parquet(input_file) if input_file.suffix == ".parquet" else pd.read_json(input_file, lines=True)
    if "text" not in df.columns:
        raise DataError(f"{input_file} has no `text` column (columns: {list(df.columns)})")
    loaded = generation.load(model)
    df["summary"] = generation.summarize(loaded, list(df["text"]), loaded.prompt or cfg.train.prompt, cfg.score.batch_size, cfg.score.max_new_tokens)
    df.to_parquet(output_file, index=False) if output_file.suffix == ".parquet" else df.to_json(output_file, orient="records", lines=True, force_ascii=False)
    typer.echo(f"{len(df)} summaries -> {output_file}")


@app.command()
def promote(
    model: Annotated[Path, typer.Option(help="The tuned model (adapter folder) to publish.")],
    scores: Annotated[Path, typer.Option(help="scores.json written by `resumo score`.")],
    candidate: Annotated[str, typer.Option(help="Name of the candidate in scores.json.")] = "tuned",
    profile: Profile = "smoke",
    sets: Sets = None,
) -> None:
    """Publish the model to the registry if it beats production.  Example: resumo promote --model runs/model/adapter --scores runs/score/scores.json"""
    import dataclasses

    from resumo import promote as stage
    from resumo.errors import DataError

    try:
        score_data = json.loads(scores.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"--scores {scores}: {err}") from None
    typer.echo(json.dumps(dataclasses.asdict(stage.run(_config(profile, sets).promote, model, score_data, candidate))))


@app.command("compile")
def compile_pipeline(
    output: Annotated[Path, typer.Option("--output", help="Pipeline YAML to write.")],
    profile: Profile = "full",
    sets: Sets = None,
) -> None:
    """Validate the config and compile the pipeline for a cluster.  Example: resumo compile --output resumo.yaml"""
    from kfp import compiler

    from resumo.pipelines.summarization import build

    compiler.Compiler().compile(build(_config(profile, sets)), str(output))
    typer.echo(f"compiled pipeline -> {output}")


@app.command("run")
def run_local(
    profile: Profile = "smoke",
    sets: Sets = None,
    runs_dir: Annotated[Path, typer.Option(help="Where runs are kept.")] = Path("runs"),
) -> None:
    """Run the whole pipeline here with kfp.local.  Example: resumo run --set train.epochs=2"""
    from resumo import local

    path = local.run(_config(profile, sets), runs_dir)
    summary = json.loads(path.read_text())
    for name, values in summary["scores"].items():
        typer.echo(f"{name:>9}: ROUGE-Lsum {values['rougeLsum']:.4f}  BERTScore F1 {values['bertscore_f1']:.4f}")
    typer.echo(f"promotion: {summary['promotion']['reason']}")
    typer.echo(f"run summary: {path}")


def _name_ref(text: str) -> tuple[str, str]:
    from resumo.errors import ConfigError

    name, sep, ref = text.partition("=")
    if not sep or not name or not ref:
        raise ConfigError(f"--model {text!r} is not NAME=REF (e.g. tuned=runs/model/adapter)")
    return name, ref


def main() -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False, console=None)])
    try:
        app()
    except ResumoError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        sys.exit(2)

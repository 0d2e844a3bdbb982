from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Metrics, Model, Output

from resumo.components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def report(
    scores: Input[Artifact],
    model: Input[Model],
    html: Output[HTML],
    markdown: Output[Markdown],
    metrics: Output[Metrics],
    judge: Input[Artifact] = None,
    store_uri: str = "",
):
    """The scoring report for the Kubeflow UI: every scalar as Metrics, an HTML page and a Markdown summary (see resumo.report)."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    import pandas as pd

    from resumo import report

    curves = Path(model.path, "curves.png")
    judged = json.loads(Path(judge.path, "judge.json").read_text()) if judge is not None else None
    scored = json.loads(Path(scores.path, "scores.json").read_text())
    paths = report.write_reports(
        scored,
        pd.read_parquet(Path(scores.path, "predictions.parquet")),
        tempfile.mkdtemp(prefix="report-"),
        curves_png=curves.read_bytes() if curves.exists() else None,
        judge=judged,
        store_uri=store_uri or None,
    )
    shutil.copy(paths["html"], html.path)
    shutil.copy(paths["markdown"], markdown.path)
    for name, value in report.scalar_metrics(scored, judged).items():
        metrics.log_metric(name, value)

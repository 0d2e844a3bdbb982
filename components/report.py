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
    """The scoring report for the Kubeflow UI: every scalar as Metrics, an HTML page and a Markdown summary (see `resumo report`)."""
    from resumo import report
    from resumo.components import path_of

    report.run_stage(scores.path, model.path, html.path, markdown.path, path_of(judge), store_uri).log_to(metrics)

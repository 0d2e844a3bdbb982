from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output

from resumo.components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def promote(
    config: dict,
    model: Input[Model],
    scores: Input[Artifact],
    decision: Output[Artifact],
    metrics: Output[Metrics],
    report: Input[HTML] = None,
    judge: Input[Artifact] = None,
    run_id: str = "",
):
    """Publish the tuned model to the registry if it passes the gates against production, the report step's page with it; then Model Registry follows (see `resumo promote`)."""
    from resumo import promote
    from resumo.components import path_of
    from resumo.config import PromoteConfig, validate

    result = promote.run_stage(
        validate(PromoteConfig, config), model.path, scores.path, report_html=path_of(report), decision_file=decision.path, judge=path_of(judge), run_id=run_id
    )
    result.log_to(metrics)

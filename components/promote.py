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
    """Publish the tuned model to the registry if it passes the gates against production, then Model Registry follows (see `resumo promote`)."""
    import dataclasses
    import json
    from pathlib import Path

    import resumo
    from resumo import promote
    from resumo.config import PromoteConfig, validate

    verdicts = json.loads(Path(judge.path, "judge.json").read_text())["opponents"] if judge else {}
    result = promote.run(  # the report step's page is published with the version
        validate(PromoteConfig, config),
        model.path + "/adapter",
        json.loads(Path(scores.path, "scores.json").read_text()),
        report_html=Path(report.path) if report else None,
        lineage={"kfp_run_id": run_id, "pipeline_version": resumo.__version__, "judge": verdicts},
    )
    Path(decision.path).write_text(json.dumps(dataclasses.asdict(result), indent=2))
    metrics.log_metric("promoted", int(result.promoted))
    for gate in result.gates:
        metrics.log_metric(f"gate_{gate.name}_passed", int(gate.passed))

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from resumo.components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def score(config: dict, train_config: dict, pairs: Input[Dataset], model: Input[Model], scores: Output[Artifact], metrics: Output[Metrics], report: Output[Markdown]):
    """Summarise the test split with the untuned student of `train_config` and the tuned model; score both (see `resumo score`)."""
    import shutil

    from resumo import score
    from resumo.config import ScoreConfig, TrainConfig, validate

    results = score.run(validate(ScoreConfig, config), pairs.path, {"baseline": validate(TrainConfig, train_config).student, "tuned": model.path + "/adapter"}, scores.path)
    for name, values in results.items():
        for key, value in values.items():
            metrics.log_metric(f"{name}_{key}", value)
    shutil.copy(scores.path + "/report.md", report.path)

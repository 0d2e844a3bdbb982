from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from resumo.components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def score(config: dict, train_config: dict, pairs: Input[Dataset], model: Input[Model], scores: Output[Artifact], metrics: Output[Metrics]):
    """Summarise the test split with the untuned student of `train_config`, the tuned model and config's reference models; score them (see `resumo score`).

    Every scalar of scores.json is logged: `<model>_<metric>`, its `_ci_low`/`_ci_high`, and `tuned_minus_<model>_<metric>`.
    """
    import json
    from pathlib import Path

    from resumo import score
    from resumo.config import ScoreConfig, TrainConfig, validate

    score.run(validate(ScoreConfig, config), pairs.path, {"baseline": validate(TrainConfig, train_config).student, "tuned": model.path + "/adapter"}, scores.path)
    for key, value in score.scalars(json.loads(Path(scores.path, "scores.json").read_text())).items():
        metrics.log_metric(key, value)

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from resumo.components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def tune(config: dict, train_config: dict, pairs: Input[Dataset], trials: Output[Artifact], metrics: Output[Metrics]) -> NamedTuple("Outputs", best_params=dict):
    """Search LoRA hyperparameters; hand on the best trial's as train.* overrides (see `resumo tune`)."""
    from collections import namedtuple

    from resumo import tune
    from resumo.config import TrainConfig, TuneConfig, validate

    result = tune.run(validate(TuneConfig, config), validate(TrainConfig, train_config), pairs.path, trials.path)
    metrics.log_metric("best_" + validate(TuneConfig, config).objective, result.best_score)
    metrics.log_metric("trials", len(result.trials))
    return namedtuple("Outputs", ["best_params"])(result.best_params)

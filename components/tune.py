from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from resumo.components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def tune(
    config: dict, train_config: dict, pairs: Input[Dataset], trials: Output[Artifact], metrics: Output[Metrics]
) -> NamedTuple("Outputs", best_params=dict, best_adapter=str):
    """Search LoRA hyperparameters in an optuna study here; hand on the best trial's train.* overrides and adapter (see `resumo tune`)."""
    from collections import namedtuple

    from resumo import tune
    from resumo.config import TrainConfig, TuneConfig, validate

    cfg = validate(TuneConfig, config)
    result = tune.run(cfg, validate(TrainConfig, train_config), pairs.path, trials.path)
    metrics.log_metric("best_" + cfg.objective, result.best_score)
    metrics.log_metric("trials", len(result.trials))
    return namedtuple("Outputs", ["best_params", "best_adapter"])(result.best_params, str(result.best_adapter))

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from resumo.components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def tune(
    config: dict, train_config: dict, pairs: Input[Dataset], trials: Output[Artifact], metrics: Output[Metrics], gpu_count: int = 1
) -> NamedTuple("Outputs", best_params=dict, best_adapter=str):
    """Search LoRA hyperparameters in an optuna study here, or reuse production's under tune.policy; hand on the train.* overrides and the best trial's adapter (see `resumo tune`)."""
    from collections import namedtuple

    from resumo import tune_policy
    from resumo.config import TrainConfig, TuneConfig, validate

    # gpu_count: what this task requests (the run's s9_gpu_count); it holds them while it trains.
    result = tune_policy.run_stage(validate(TuneConfig, config), validate(TrainConfig, train_config), pairs.path, trials.path, gpu_count)
    result.log_to(metrics)
    return namedtuple("Outputs", ["best_params", "best_adapter"])(**result.outputs)

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from resumo.components import CPU_IMAGE, TRAIN_IMAGE


# Named `tune` like the optuna component, so the task is `tune` whichever backend runs it.
@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def tune(
    config: dict,
    train_config: dict,
    pairs: Input[Dataset],
    gpu_accelerator: str,
    gpu_count: int,
    gpu_cpu: str,
    gpu_memory: str,
    gpu_tolerations: list,
    gpu_node_selector: dict,
    s3_secret: str,
    service_account: str,
    experiment: Output[Artifact],
    metrics: Output[Metrics],
) -> NamedTuple("Outputs", best_params=dict, best_adapter=str):
    """Launch a Katib Experiment (one trial of production's values under tune.policy reuse), wait for it, hand on the best trial's train.* overrides and adapter URI (see `resumo tune --backend katib`).

    Each trial pod requests the gpu_* settings: the pipeline passes the run's s9_gpu_* parameters.
    A key of the inputs names the Experiment (resumo.checkpoints.inputs_key), so a retried task waits on its first attempt's.
    Trial pods get the run's S3 Secret and service account (cluster.*, fixed when compiled; "" is none).
    """
    from collections import namedtuple

    from resumo import kube, tune_policy
    from resumo.config import TrainConfig, TuneConfig, validate

    gpu = {"accelerator": gpu_accelerator, "count": gpu_count, "cpu": gpu_cpu, "memory": gpu_memory, "tolerations": gpu_tolerations, "node_selector": gpu_node_selector}
    target = kube.JobTarget.of_task((config, train_config, pairs.uri), gpu, TRAIN_IMAGE, s3_secret, service_account)
    result = tune_policy.run_katib_stage(validate(TuneConfig, config), validate(TrainConfig, train_config), pairs.uri, experiment.path, target)
    result.log_to(metrics)
    return namedtuple("Outputs", ["best_params", "best_adapter"])(**result.outputs)

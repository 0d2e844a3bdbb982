from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from resumo.components import CPU_IMAGE, TRAIN_IMAGE


# Named `train` like the pod component, so the task is `train` whichever backend runs it.
@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def train(
    config: dict,
    params: dict,
    pairs: Input[Dataset],
    s3_secret: str,
    service_account: str,
    gpu_accelerator: str,
    gpu_count: int,
    gpu_cpu: str,
    gpu_memory: str,
    gpu_tolerations: list,
    gpu_node_selector: dict,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Train as a Kubeflow Trainer TrainJob (train.trainjob.num_nodes nodes, each with the gpu_* settings), wait for it,
    hand its adapter on (see `resumo train --backend trainjob`). A key of the inputs names the TrainJob, so a retry
    meets it (resumo.checkpoints.inputs_key); its pods get the run's S3 Secret and service account ("" is none)."""
    from resumo import kube, trainjob
    from resumo.config import TrainConfig, validate

    gpu = {"accelerator": gpu_accelerator, "count": gpu_count, "cpu": gpu_cpu, "memory": gpu_memory, "tolerations": gpu_tolerations, "node_selector": gpu_node_selector}
    target = kube.JobTarget.of_task((config, params, pairs.uri), gpu, TRAIN_IMAGE, s3_secret, service_account)
    result = trainjob.run_stage(validate(TrainConfig, config), params, pairs.uri, model.path, target)
    result.log_to(metrics)

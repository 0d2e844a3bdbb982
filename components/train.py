from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from resumo.components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def train(config: dict, params: dict, pairs: Input[Dataset], model: Output[Model], metrics: Output[Metrics], best_adapter: str = ""):
    """LoRA-tune the student with `config` updated by `params` (dotted train.* keys; see `resumo train`),
    or, given a Katib trial's `best_adapter` URI, hand that trial's outputs on without training again.

    `model` holds adapter/ (and merged/ with train.merge), curves.png and metrics.json;
    `metrics` gets the last epoch's eval_loss and rougeLsum and train_tokens_per_second.
    Checkpoints are also kept in train.checkpoint_store under a key of these inputs: a retried pod resumes from them.
    """
    from resumo import checkpoints, launch
    from resumo.config import TrainConfig, validate

    result = launch.run_stage(validate(TrainConfig, config), params, pairs.path, model.path, best_adapter, checkpoints.inputs_key(config, params, pairs.uri))
    result.log_to(metrics)

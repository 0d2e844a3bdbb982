from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from resumo.components import TRAIN_IMAGE, VLLM_IMAGE


def score(config: dict, train_config: dict, promote_config: dict, pairs: Input[Dataset], model: Input[Model], scores: Output[Artifact], metrics: Output[Metrics]):
    """Summarise the test split with the untuned student of `train_config` (baseline), the tuned model, the production
    model of `promote_config`'s registry (score.compare_production) and config's reference models; score them (see `resumo score`).

    Every number of scores.json is logged, named as resumo.report names them.
    """
    from resumo import score
    from resumo.config import PromoteConfig, ScoreConfig, TrainConfig, validate

    models = score.pipeline_models(validate(TrainConfig, train_config).student, model.path)
    score.run_stage(validate(ScoreConfig, config), validate(PromoteConfig, promote_config), pairs.path, models, scores.path).log_to(metrics)


# The image follows score.engine: vLLM has its own image, every transformers engine runs in the train image.
_COMPONENTS = {image: dsl.component(base_image=image, install_kfp_package=False)(score) for image in (TRAIN_IMAGE, VLLM_IMAGE)}


def score_component(engine: str):
    """The score component for `score.engine`."""
    return _COMPONENTS[VLLM_IMAGE if engine == "vllm" else TRAIN_IMAGE]

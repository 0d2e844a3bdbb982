from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from resumo.components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def distill(config: dict, articles: Input[Dataset], pairs: Output[Dataset], metrics: Output[Metrics]):
    """Have the teacher summarise every article; filter and label its outputs (see `resumo distill`)."""
    from resumo import distill
    from resumo.config import DistillConfig, validate

    result = distill.run(validate(DistillConfig, config), articles.path, pairs.path)
    for name, value in result.counts.items():
        metrics.log_metric(name, value)

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from resumo.components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def score(config: dict, train_config: dict, promote_config: dict, pairs: Input[Dataset], model: Input[Model], scores: Output[Artifact], metrics: Output[Metrics]):
    """Summarise the test split with the untuned student of `train_config`, the tuned model, the production model of
    `promote_config`'s registry (score.compare_production) and config's reference models; score them (see `resumo score`).

    Every scalar of scores.json is logged: `<model>_<metric>`, its `_ci_low`/`_ci_high`, and `tuned_minus_<model>_<metric>`.
    """
    import json
    from pathlib import Path

    from resumo import score
    from resumo.config import PromoteConfig, ScoreConfig, TrainConfig, validate

    cfg, promotion = validate(ScoreConfig, config), validate(PromoteConfig, promote_config)
    models = {"baseline": validate(TrainConfig, train_config).student, "tuned": model.path + "/adapter"}
    if cfg.compare_production:
        models = score.with_production(models, promotion.registry, promotion.production_name)
    score.run(cfg, pairs.path, models, scores.path)
    for key, value in score.scalars(json.loads(Path(scores.path, "scores.json").read_text())).items():
        metrics.log_metric(key, value)

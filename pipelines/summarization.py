"""The resumo pipeline: scrape -> distill -> tune -> train -> score -> promote.

Compiled for a cluster with `resumo compile --output resumo.yaml` and run on a
laptop, as this same function, with `resumo run` (kfp.local). Parameters are the
validated config, one dict per stage, so the UI shows them grouped by stage.
"""

from kfp import dsl

from resumo.components.distill import distill
from resumo.components.katib import tune as katib_tune
from resumo.components.promote import promote
from resumo.components.score import score
from resumo.components.scrape import scrape
from resumo.components.train import train
from resumo.components.tune import tune
from resumo.config import PipelineConfig

GPU = "nvidia.com/gpu"


def build(cfg: PipelineConfig):
    """The pipeline function, its parameters defaulting to `cfg` (already validated)."""
    defaults = cfg.stage_parameters()
    gpu_teacher = cfg.distill.teacher.backend in ("vllm", "transformers")

    @dsl.pipeline(name="resumo", description="Fine-tune a small language model to summarise Portuguese (LoRA, distilled targets).")
    def resumo(
        scrape_config: dict = defaults["scrape"],
        distill_config: dict = defaults["distill"],
        tune_config: dict = defaults["tune"],
        train_config: dict = defaults["train"],
        score_config: dict = defaults["score"],
        promote_config: dict = defaults["promote"],
    ):
        # 1. Articles from the dump, cleaned and split by article.
        articles = scrape(config=scrape_config).set_display_name("scrape")
        # 2. The teacher's summaries: the student's targets.
        pairs = distill(config=distill_config, articles=articles.outputs["articles"]).set_display_name("distill")
        if gpu_teacher:
            _on_gpu(pairs)
        # 3. Search LoRA hyperparameters on the validation split: a Katib Experiment on a cluster
        #    (the launcher on CPU, each trial a GPU pod), else an optuna study in the task itself.
        if cfg.tune.backend == "katib":
            search = katib_tune(config=tune_config, train_config=train_config, pairs=pairs.outputs["pairs"]).set_display_name("tune")
        else:
            search = _on_gpu(tune(config=tune_config, train_config=train_config, pairs=pairs.outputs["pairs"]).set_display_name("tune"))
        # 4. Train the student with the best hyperparameters.
        tuned = _on_gpu(
            train(config=train_config, params=search.outputs["best_params"], pairs=pairs.outputs["pairs"]).set_display_name("train")
        )
        # 5. Untuned against tuned student on the test split.
        scores = score(
            config=score_config, train_config=train_config, pairs=pairs.outputs["pairs"], model=tuned.outputs["model"]
        ).set_display_name("score")
        # 6. Publish if it beats production.
        promote(config=promote_config, model=tuned.outputs["model"], scores=scores.outputs["scores"]).set_display_name("promote")

    return resumo


def _on_gpu(task):
    return task.set_accelerator_type(GPU).set_accelerator_limit(1)

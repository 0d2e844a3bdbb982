"""The resumo pipeline: scrape -> distill -> tune -> train -> score -> promote.

Compiled for a cluster with `resumo compile --output resumo.yaml` and run on a
laptop, as this same function, with `resumo run` (kfp.local). Parameters are the
validated config, one dict per stage, so the UI shows them grouped by stage.
"""

from kfp import dsl

from resumo.components.distill import distill_shard, merge_pairs, plan_shards
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
        # 2. The teacher's summaries, the student's targets: distill.shards tasks in parallel (one GPU each), merged.
        shards = plan_shards(config=distill_config).set_display_name("distill: plan shards")
        with dsl.ParallelFor(shards.output) as shard:
            part = distill_shard(cfg.distill.teacher.backend)(config=distill_config, shard=shard, articles=articles.outputs["articles"])
            part.set_display_name("distill: shard")
            if gpu_teacher:
                _on_gpu(part)
        pairs = merge_pairs(articles=articles.outputs["articles"], shards=dsl.Collected(part.outputs["pairs"])).set_display_name("distill")
        # 3. Search LoRA hyperparameters on the validation split.
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

"""Distill in the pipeline: plan the shards, distil each in parallel, merge (see `resumo distill`)."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from resumo.components import CPU_IMAGE, TRAIN_IMAGE, VLLM_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def plan_shards(config: dict) -> List[int]:
    """Validate the distill config before any GPU is asked for; the shard numbers to fan out over."""
    from resumo.config import DistillConfig, validate

    return list(range(validate(DistillConfig, config).shards))


def distill(config: dict, shard: int, articles: Input[Dataset], pairs: Output[Dataset], metrics: Output[Metrics]):
    """Have the teacher summarise this shard's articles; clean and label its answers."""
    from resumo import distill
    from resumo.config import DistillConfig, validate

    distill.run_stage(validate(DistillConfig, config), articles.path, pairs.path, shard).log_to(metrics)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def merge_pairs(articles: Input[Dataset], shards: Input[List[Dataset]], pairs: Output[Dataset], metrics: Output[Metrics]):
    """One `pairs` dataset from the shards, in the articles' order; counts per filter reason."""
    from resumo import distill

    distill.merge_stage(articles.path, [shard.path for shard in shards], pairs.path).log_to(metrics)


# The image follows the backend: vLLM has its own image, `transformers` needs torch, the rest only HTTP or nothing.
_IMAGES = {"vllm": VLLM_IMAGE, "transformers": TRAIN_IMAGE, "openai": CPU_IMAGE, "extractive": CPU_IMAGE}
_SHARD_COMPONENTS = {backend: dsl.component(base_image=image, install_kfp_package=False)(distill) for backend, image in _IMAGES.items()}


def distill_shard(backend: str):
    """The shard component for a teacher backend (`distill.teacher.backend`)."""
    return _SHARD_COMPONENTS[backend]

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from resumo.components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def scrape(config: dict, articles: Output[Dataset], metrics: Output[Metrics], run_date: str = ""):
    """Collect and clean Wikipedia articles into train/val/test Parquet (see `resumo scrape`).

    `run_date` is part of KFP's cache key only: a run on a new day scrapes again, a rerun the same day reuses.
    The checkpoint lives in scrape.checkpoint_store under a key of these inputs: a retried pod resumes from it.
    """
    from resumo import checkpoints, scrape
    from resumo.config import ScrapeConfig, validate

    scrape.run_stage(validate(ScrapeConfig, config), articles.path, checkpoints.inputs_key(config, run_date)).log_to(metrics)

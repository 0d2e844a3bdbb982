from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from resumo.components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def judge(config: dict, pairs: Input[Dataset], scores: Input[Artifact], verdicts: Output[Artifact], metrics: Output[Metrics]):
    """LLM judge: the candidate's summaries against every other model's, both orders (see `resumo judge`). The API key comes from the env var judge.api_key_env (a Secret)."""
    import pandas as pd

    from resumo import judge
    from resumo.config import JudgeConfig, validate

    rows = judge.with_articles(pd.read_parquet(scores.path + "/predictions.parquet"), pairs.path)
    result = judge.run(validate(JudgeConfig, config), rows, verdicts.path)
    for opponent, values in result["opponents"].items():
        for key in ("win_rate", "n_articles", "invalid_verdicts"):
            if values[key] is not None:
                metrics.log_metric(f"{opponent}_{key}", values[key])

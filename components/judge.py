from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from resumo.components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def judge(config: dict, pairs: Input[Dataset], scores: Input[Artifact], verdicts: Output[Artifact], metrics: Output[Metrics]):
    """LLM judge: the candidate's summaries against every other model's, both orders (see `resumo judge`). The API key comes from the env var judge.api_key_env (a Secret)."""
    from resumo import judge
    from resumo.config import JudgeConfig, validate

    judge.run_stage(validate(JudgeConfig, config), scores.path, verdicts.path, pairs.path).log_to(metrics)

"""The pipeline's first task: the run's parameters against what the pipeline was compiled with."""

from kfp import dsl

from resumo.components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def check_parameters(compiled: dict, scrape: dict, distill: dict, tune: dict, train: dict, judge: dict, promote: dict):
    """Validate every stage's config, and fail, before any GPU is asked for, where the run changed a value the compiled DAG is built from."""
    from resumo import run_parameters

    run_parameters.check(compiled, {"scrape": scrape, "distill": distill, "tune": tune, "train": train, "judge": judge, "promote": promote})

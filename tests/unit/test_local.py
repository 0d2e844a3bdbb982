"""resumo.pipelines.local around kfp.local: what a run leaves behind in this process."""

import builtins

import pytest

from resumo.pipelines import local
from resumo.config import load_config
from resumo.errors import ResumoError
from resumo.pipelines import summarization


def test_a_run_leaves_print_as_it_found_it(tmp_path, monkeypatch, capsys):
    """kfp.local swaps builtins.print per task; ParallelFor threads can leave the indenting one."""

    def pipeline_that_leaks_an_indenting_print(cfg):
        def pipeline():
            leaked = builtins.print
            builtins.print = lambda *args, **kwargs: leaked("    ", *args, **kwargs)
            raise RuntimeError("Task 'distill' finished with status FAILURE")

        return pipeline

    monkeypatch.setattr(builtins, "print", builtins.print)  # restored after the test, pass or fail
    monkeypatch.setattr(summarization, "build", pipeline_that_leaks_an_indenting_print)
    with pytest.raises(ResumoError, match="local run failed: Task 'distill'"):
        local.run(load_config("smoke"), tmp_path / "runs")
    print("rougeLsum=0.5")
    assert capsys.readouterr().out == "rougeLsum=0.5\n"

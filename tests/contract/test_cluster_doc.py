"""docs/cluster.md's account of the cluster, checked against what the compiler writes.

The table between the `cluster-tasks` markers says, per task of the full profile with a
judge, which image it runs, whether it asks for a GPU, which Secrets it gets as
environment, and whether it is retried and cached. Each cell is read back from the
compiled YAML here, so the docs cannot drift from the pipeline again (the README once said
every task gets resumo-s3, and that tune is never retried).
"""

import re
from pathlib import Path

import pytest
import yaml

from resumo.config import load_config
from resumo.pipelines.summarization import BACKOFF, build

DOC = Path(__file__).parents[2] / "docs" / "cluster.md"


def _doc_table() -> dict[str, dict[str, str]]:
    text = DOC.read_text()
    block = re.search(r"<!-- cluster-tasks:begin -->\n(.*?)<!-- cluster-tasks:end -->", text, re.S).group(1)
    header, _, *rows = [line.strip().strip("|").split("|") for line in block.strip().splitlines()]
    columns = [c.strip() for c in header]
    return {cells[0].strip(): dict(zip(columns[1:], (c.strip() for c in cells[1:]))) for cells in rows}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from kfp import compiler

    path = tmp_path_factory.mktemp("cluster_doc") / "resumo.yaml"
    compiler.Compiler().compile(build(load_config("full", ["judge.base_url=http://judge:8000/v1"])), str(path))
    return list(yaml.safe_load_all(path.read_text()))


def _compiled_table(spec: dict, platform: dict) -> dict[str, dict[str, str]]:
    tasks = {**spec["root"]["dag"]["tasks"], **spec["components"]["comp-for-loop-1"]["dag"]["tasks"]}
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    table = {}
    for name, task in tasks.items():
        if name.startswith("for-loop"):
            continue
        executor = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        container = spec["deploymentSpec"]["executors"][executor]["container"]
        secrets = [s["secretName"] + (" (optional)" if s.get("optional") else "") for s in k8s.get(executor, {}).get("secretAsEnv", [])]
        table[name] = {
            "image": container["image"].rsplit("/", 1)[-1].split(":")[0],
            "GPU": "yes" if "accelerator" in container.get("resources", {}) else "no",
            "Secrets as environment": ", ".join(secrets) or "none",
            "retried": "yes" if task.get("retryPolicy") else "no",
            "cached": "yes" if task.get("cachingOptions", {}).get("enableCache") else "no",
        }
    return table


def test_the_doc_task_table_is_what_the_compiler_writes(compiled):
    documented, actual = _doc_table(), _compiled_table(*compiled)
    assert sorted(documented) == sorted(actual)
    assert {name: documented[name] for name in actual} == actual


def test_the_doc_retry_schedule_is_the_compiled_one(compiled):
    spec, _ = compiled
    policy = spec["root"]["dag"]["tasks"]["scrape"]["retryPolicy"]
    text = " ".join(DOC.read_text().split())
    retries = load_config("full").cluster.retries
    assert policy["maxRetryCount"] == retries and f"get {retries} retries (`cluster.retries`) after 1, 2 and 4 minutes" in text
    assert policy["backoffDuration"] == BACKOFF["backoff_duration"] == "60s" and policy["backoffFactor"] == 2


def test_the_doc_names_every_compile_time_choice():
    from resumo import run_parameters

    section = " ".join(DOC.read_text().split("**Compile-time choices.**")[1].split("\n- **")[0].split())
    for choice in run_parameters.CHOICES:
        *_, leaf = choice.key.split(".")
        assert f"`{leaf}`" in section or f"`{choice.key}`" in section, choice.key

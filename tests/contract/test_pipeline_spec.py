"""The compiled pipeline: tasks, edges, GPU requests and parameters."""

import pytest
import yaml
from kfp import components

from resumo.config import load_config
from resumo.pipelines.summarization import build

STAGES = ["scrape", "distill", "tune", "train", "score", "promote"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from kfp import compiler

    path = tmp_path_factory.mktemp("compiled") / "resumo.yaml"
    compiler.Compiler().compile(build(load_config("full")), str(path))
    return path


def test_compiled_pipeline_loads_back_with_the_six_stages(compiled):
    loaded = components.load_component_from_file(str(compiled))
    assert loaded.name == "resumo"
    spec = yaml.safe_load(compiled.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    # distill fans out: plan-shards -> for-loop-1 (a `distill` task per shard) -> merge-pairs.
    assert sorted(tasks) == sorted(["scrape", "plan-shards", "for-loop-1", "merge-pairs", "tune", "train", "score", "promote"])
    deps = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert deps == {
        "scrape": set(),
        "plan-shards": set(),
        "for-loop-1": {"plan-shards", "scrape"},
        "merge-pairs": {"for-loop-1", "scrape"},
        "tune": {"merge-pairs"},
        "train": {"merge-pairs", "tune"},
        "score": {"merge-pairs", "train"},
        "promote": {"train", "score"},
    }


def test_distill_fans_out_over_the_shard_list_and_collects_every_shard(compiled):
    spec = yaml.safe_load(compiled.read_text())
    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--plan-shards-Output"
    assert list(spec["components"]["comp-for-loop-1"]["dag"]["tasks"]) == ["distill"]
    merge = spec["root"]["dag"]["tasks"]["merge-pairs"]["inputs"]["artifacts"]["shards"]
    assert merge["taskOutputArtifact"]["producerTask"] == "for-loop-1"
    # Every later stage reads the merged pairs, never one shard's.
    for stage in ("tune", "train", "score"):
        pairs = spec["root"]["dag"]["tasks"][stage]["inputs"]["artifacts"]["pairs"]["taskOutputArtifact"]
        assert pairs["producerTask"] == "merge-pairs", stage


def test_gpu_requests_on_distill_tune_and_train(compiled):
    spec = yaml.safe_load(compiled.read_text())
    executors = spec["deploymentSpec"]["executors"]
    for stage in STAGES:
        resources = executors[f"exec-{stage}"]["container"].get("resources", {})
        accelerator = resources.get("accelerator", {})
        if stage in ("distill", "tune", "train"):
            assert accelerator.get("resourceType") == "nvidia.com/gpu" and accelerator.get("resourceCount") == "1", stage
        else:
            assert not accelerator, stage


def test_parameters_default_to_the_validated_profile(compiled):
    spec = yaml.safe_load(compiled.read_text())
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert sorted(params) == sorted(f"{s}_config" for s in STAGES)
    assert params["train_config"]["defaultValue"]["lora"]["r"] == 64
    assert params["distill_config"]["defaultValue"]["teacher"]["backend"] == "vllm"


def test_components_run_in_our_images_without_installing_kfp(compiled):
    spec = yaml.safe_load(compiled.read_text())
    for stage in STAGES:
        container = spec["deploymentSpec"]["executors"][f"exec-{stage}"]["container"]
        assert "/resumo-" in container["image"]
        assert "pip install" not in " ".join(container["command"])


def test_extractive_teacher_needs_no_gpu(tmp_path):
    from kfp import compiler

    path = tmp_path / "smoke.yaml"
    compiler.Compiler().compile(build(load_config("smoke")), str(path))
    executors = yaml.safe_load(path.read_text())["deploymentSpec"]["executors"]
    assert "accelerator" not in executors["exec-distill"]["container"].get("resources", {})
    assert executors["exec-train"]["container"]["resources"]["accelerator"]["resourceCount"] == "1"


@pytest.mark.parametrize(("profile", "overrides", "image"), [("full", [], "resumo-vllm"), ("smoke", [], "resumo-cpu"), ("smoke", ["distill.teacher.backend=transformers"], "resumo-train")])
def test_distill_runs_in_the_image_of_its_teacher_backend(tmp_path, profile, overrides, image):
    from kfp import compiler

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build(load_config(profile, overrides)), str(path))
    executors = yaml.safe_load(path.read_text())["deploymentSpec"]["executors"]
    assert f"/{image}:" in executors["exec-distill"]["container"]["image"]

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
    assert sorted(tasks) == sorted(STAGES)
    deps = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert deps == {
        "scrape": set(),
        "distill": {"scrape"},
        "tune": {"distill"},
        "train": {"distill", "tune"},
        "score": {"distill", "train"},
        "promote": {"train", "score"},
    }


def test_gpu_requests_on_distill_and_train(compiled):
    spec = yaml.safe_load(compiled.read_text())
    executors = spec["deploymentSpec"]["executors"]
    for stage in STAGES:
        resources = executors[f"exec-{stage}"]["container"].get("resources", {})
        accelerator = resources.get("accelerator", {})
        if stage in ("distill", "train"):  # full tunes with Katib: GPU trial pods, a CPU launcher
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

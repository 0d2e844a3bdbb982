"""The compiled pipeline: tasks, edges, GPU requests, caching, retries, secrets and parameters."""

import json

import pytest
import yaml
from kfp import components

from resumo import run_parameters
from resumo.config import load_config
from resumo.pipelines.summarization import build

STAGES = ["scrape", "distill", "tune", "train", "score", "report", "promote"]
# Which tasks ask for a GPU, by how the run tunes (the full profile's vllm teacher distils on one).
# Katib: tune is a CPU launcher whose trials are GPU pods (test_katib_trials_get_the_runs_gpu_parameters),
# and train hands the best trial's adapter on, so it needs a GPU only to retrain. optuna: the
# study trains in the tune task itself, then train trains the winner again. score generates every
# model's summaries of the test split on the run's GPU, under every backend.
GPU_TASKS = {
    ("katib", "false"): {"distill", "score"},
    ("katib", "true"): {"distill", "train", "score"},
    ("optuna", "false"): {"distill", "tune", "train", "score"},
}
# Retried: they talk to S3, an endpoint or the Kubernetes API, and train resumes from the
# checkpoints it keeps in S3 (resumo.checkpoints); report only reads its input artifacts.
NETWORK_STAGES = ["scrape", "distill", "tune", "train", "score", "promote"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from kfp import compiler

    path = tmp_path_factory.mktemp("compiled") / "resumo.yaml"
    compiler.Compiler().compile(build(load_config("full")), str(path))
    return path


def test_compiled_pipeline_loads_back_with_the_six_stages(compiled):
    loaded = components.load_component_from_file(str(compiled))
    assert loaded.name == "resumo"
    spec = next(_spec(compiled))
    tasks = spec["root"]["dag"]["tasks"]
    # distill fans out: plan-shards -> for-loop-1 (a `distill` task per shard) -> merge-pairs.
    assert sorted(tasks) == sorted(["check-parameters", "scrape", "plan-shards", "for-loop-1", "merge-pairs", "tune", "train", "score", "report", "promote"])
    deps = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert deps == {
        "check-parameters": set(),  # first: everything else waits for it
        "scrape": {"check-parameters"},
        "plan-shards": {"check-parameters"},
        "for-loop-1": {"plan-shards", "scrape"},
        "merge-pairs": {"for-loop-1", "scrape"},
        "tune": {"merge-pairs"},
        "train": {"merge-pairs", "tune"},
        "score": {"merge-pairs", "train"},
        "report": {"score", "train"},
        "promote": {"train", "score", "report"},
    }


def _compile(tmp_path, profile, overrides=()):
    from kfp import compiler

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build(load_config(profile, list(overrides))), str(path))
    return next(_spec(path))


def test_train_hands_on_the_best_katib_trial_unless_asked_to_retrain(compiled, tmp_path):
    adopted = next(_spec(compiled))
    best = adopted["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]["best_adapter"]["taskOutputParameter"]
    assert best == {"outputParameterKey": "best_adapter", "producerTask": "tune"}
    assert "accelerator" not in adopted["deploymentSpec"]["executors"]["exec-train"]["container"].get("resources", {})
    retrained = _compile(tmp_path, "full", ["tune.retrain_best=true"])
    assert "best_adapter" not in retrained["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    assert "s9_gpu_count" in retrained["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]["accelerator"]["resourceCount"]


def test_judge_runs_between_score_and_report_when_configured(compiled, tmp_path):
    assert "judge" not in next(_spec(compiled))["root"]["dag"]["tasks"]
    tasks = _compile(tmp_path, "full", ["judge.base_url=http://judge.example:8000/v1"])["root"]["dag"]["tasks"]
    assert set(tasks["judge"]["dependentTasks"]) == {"merge-pairs", "score"}
    assert tasks["report"]["inputs"]["artifacts"]["judge"]["taskOutputArtifact"] == {"outputArtifactKey": "verdicts", "producerTask": "judge"}
    assert tasks["judge"]["retryPolicy"]["maxRetryCount"] == 3


def test_promote_publishes_the_report_page(compiled):
    tasks = next(_spec(compiled))["root"]["dag"]["tasks"]
    assert tasks["promote"]["inputs"]["artifacts"]["report"]["taskOutputArtifact"] == {"outputArtifactKey": "html", "producerTask": "report"}


def _spec(path):
    return yaml.safe_load_all(path.read_text())


def _tasks(spec):
    """Every task by name, the per-shard `distill` inside the loop included."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    return {**tasks, **spec["components"]["comp-for-loop-1"]["dag"]["tasks"]}


def test_distill_fans_out_over_the_shard_list_and_collects_every_shard(compiled):
    spec = next(_spec(compiled))
    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--plan-shards-Output"
    assert list(spec["components"]["comp-for-loop-1"]["dag"]["tasks"]) == ["distill"]
    merge = spec["root"]["dag"]["tasks"]["merge-pairs"]["inputs"]["artifacts"]["shards"]
    assert merge["taskOutputArtifact"]["producerTask"] == "for-loop-1"
    # Every later stage reads the merged pairs, never one shard's.
    for stage in ("tune", "train", "score"):
        pairs = spec["root"]["dag"]["tasks"][stage]["inputs"]["artifacts"]["pairs"]["taskOutputArtifact"]
        assert pairs["producerTask"] == "merge-pairs", stage


@pytest.mark.parametrize(("backend", "retrain_best"), list(GPU_TASKS))
def test_gpu_requests_follow_how_the_run_tunes(tmp_path, backend, retrain_best):
    from kfp import compiler

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build(load_config("full", [f"tune.backend={backend}", f"tune.retrain_best={retrain_best}"])), str(path))
    spec, platform = _spec(path)
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    on_gpu = {stage for stage in STAGES if executors[f"exec-{stage}"]["container"].get("resources", {}).get("accelerator")}
    assert on_gpu == GPU_TASKS[backend, retrain_best]
    for stage in STAGES:
        resources = executors[f"exec-{stage}"]["container"].get("resources", {})
        if stage in on_gpu:
            # Type, count, CPU and memory come from the s9_gpu_* pipeline parameters.
            assert "s9_gpu_accelerator" in resources["accelerator"]["resourceType"], stage
            assert "s9_gpu_count" in resources["accelerator"]["resourceCount"], stage
            assert "s9_gpu_cpu" in resources["resourceCpuRequest"] and "s9_gpu_memory" in resources["resourceMemoryRequest"], stage
            # Inside the shard loop a pipeline parameter arrives as `pipelinechannel--<name>`.
            (toleration,) = k8s[f"exec-{stage}"]["tolerations"]
            assert toleration["tolerationJson"]["componentInputParameter"].endswith("s9_gpu_tolerations"), stage
            assert k8s[f"exec-{stage}"]["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith("s9_gpu_node_selector"), stage
        else:
            assert not {"tolerations", "nodeSelector"} & set(k8s.get(f"exec-{stage}", {})), stage


def test_katib_trials_get_the_runs_gpu_parameters(compiled):
    """The launcher itself runs on CPU; the s9_gpu_* values reach the trial pods it creates."""
    spec, _ = _spec(compiled)
    inputs = spec["root"]["dag"]["tasks"]["tune"]["inputs"]["parameters"]
    for field in ("accelerator", "count", "cpu", "memory", "tolerations", "node_selector"):
        assert inputs[f"gpu_{field}"] == {"componentInputParameter": f"s9_gpu_{field}"}, field


def test_scrape_requests_a_cpu_per_cleaning_process(compiled):
    spec, _ = _spec(compiled)
    workers = load_config("full").scrape.workers
    assert workers > 1
    assert spec["deploymentSpec"]["executors"]["exec-scrape"]["container"]["resources"]["resourceCpuRequest"] == str(workers)


def test_gpu_defaults_come_from_the_cluster_config(tmp_path):
    from kfp import compiler

    path = tmp_path / "p.yaml"
    cfg = load_config("full", ["cluster.gpu.count=2", "cluster.gpu.node_selector={pool: h100}"])
    compiler.Compiler().compile(build(cfg), str(path))
    params = next(_spec(path))["root"]["inputDefinitions"]["parameters"]
    assert params["s9_gpu_count"]["defaultValue"] == 2
    assert params["s9_gpu_accelerator"]["defaultValue"] == "nvidia.com/gpu"
    assert params["s9_gpu_node_selector"]["defaultValue"] == {"pool": "h100"}
    assert params["s9_gpu_tolerations"]["defaultValue"][0]["key"] == "nvidia.com/gpu"


def test_caching_is_keyed_on_the_run_date_and_off_for_promote(compiled):
    tasks = _tasks(next(_spec(compiled)))
    caching = {name: task.get("cachingOptions", {}).get("enableCache", False) for name, task in tasks.items() if name != "for-loop-1"}
    # Deterministic given their inputs; promote reads production, which moves between runs.
    assert caching == {
        **{name: True for name in ("check-parameters", "scrape", "plan-shards", "distill", "merge-pairs", "tune", "train", "score", "report")},
        "promote": False,
    }
    # scrape's cache key holds the run date, so a new day scrapes again; distill's holds scrape's output.
    assert tasks["scrape"]["inputs"]["parameters"]["run_date"] == {"componentInputParameter": "s0_run_date"}
    assert tasks["distill"]["inputs"]["artifacts"]["articles"] == {"componentInputArtifact": "pipelinechannel--scrape-articles"}


def test_retries_on_the_stages_that_talk_to_the_network(compiled):
    tasks = _tasks(next(_spec(compiled)))
    for stage in STAGES:
        policy = tasks[stage].get("retryPolicy")
        if stage in NETWORK_STAGES:
            assert policy["maxRetryCount"] == 3 and policy["backoffDuration"] == "60s", stage
        else:
            assert policy is None, stage


def test_secrets_are_environment_by_name(compiled):
    _, platform = _spec(compiled)
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for stage in set(STAGES) - {"report"}:  # report reads only its input artifacts
        secrets = {s["secretName"]: s for s in k8s[f"exec-{stage}"]["secretAsEnv"]}
        s3 = secrets["resumo-s3"]
        assert {e["envVar"] for e in s3["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}
        assert not s3["optional"]
        if stage in ("distill", "score"):
            assert secrets["resumo-hf"]["optional"] and secrets["resumo-hf"]["keyToEnv"] == [{"envVar": "HF_TOKEN", "secretKey": "HF_TOKEN"}]
        # The full profile's teacher is vLLM in the task and it has no judge: no API key anywhere.
        assert "resumo-openai" not in secrets, stage


@pytest.mark.parametrize("judge_key", ["OPENAI_API_KEY", "JUDGE_KEY"])
def test_each_endpoint_task_gets_the_api_key_variable_its_config_names(tmp_path, judge_key):
    from kfp import compiler

    overrides = ["distill.teacher.backend=openai", "distill.teacher.base_url=http://teacher:8000/v1", "distill.teacher.api_key_env=TEACHER_KEY"]
    overrides += ["judge.base_url=http://judge:8000/v1", f"judge.api_key_env={judge_key}"]
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build(load_config("full", overrides)), str(path))
    _, platform = _spec(path)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]

    def openai_env(executor: str) -> list[dict] | None:
        secrets = {s["secretName"]: s for s in executors[executor].get("secretAsEnv", [])}
        return secrets.get("resumo-openai", {}).get("keyToEnv")

    # What resumo.chat_client reads is the variable named by that task's own config.
    assert openai_env("exec-distill") == [{"envVar": "TEACHER_KEY", "secretKey": "OPENAI_API_KEY"}]
    assert openai_env("exec-judge") == [{"envVar": judge_key, "secretKey": "OPENAI_API_KEY"}]
    assert all(openai_env(name) is None for name in executors if name not in ("exec-distill", "exec-judge"))


def test_pipeline_root_is_configurable(compiled, tmp_path):
    from kfp import compiler

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build(load_config("full", ["cluster.pipeline_root=s3://ml/resumo"])), str(path))
    assert next(_spec(path))["defaultPipelineRoot"] == "s3://ml/resumo"
    # Unset, the namespace's kfp-launcher ConfigMap decides (manifests/).
    assert "defaultPipelineRoot" not in next(_spec(compiled))


def test_parameters_read_in_pipeline_order(compiled):
    # The UI lists parameters alphabetically; the step-number prefixes make that pipeline order.
    params = next(_spec(compiled))["root"]["inputDefinitions"]["parameters"]
    names = list(params)
    assert names == sorted(names)
    stages = [n for n in names if n[:2] in {f"s{i}" for i in range(1, 8)}]
    assert stages == ["s1_scrape", "s2_distill", "s3_tune", "s4_train", "s5_score", "s6_judge", "s7_promote"]
    assert stages == list(run_parameters.PARAMETERS.values())  # the names check_parameters reports the run's edits under
    assert names[0] == "s0_run_date" and all(n.startswith("s9_gpu_") for n in names[len(stages) + 1 :])


def test_parameters_default_to_the_validated_profile(compiled):
    params = next(_spec(compiled))["root"]["inputDefinitions"]["parameters"]
    assert params["s4_train"]["defaultValue"]["lora"]["r"] == 64
    assert params["s2_distill"]["defaultValue"]["teacher"]["backend"] == "vllm"
    assert "cluster" not in params["s1_scrape"]["defaultValue"]


def test_components_run_in_our_images_without_installing_kfp(compiled):
    spec = next(_spec(compiled))
    for stage in STAGES:
        container = spec["deploymentSpec"]["executors"][f"exec-{stage}"]["container"]
        assert "/resumo-" in container["image"]
        assert "pip install" not in " ".join(container["command"])


def test_extractive_teacher_needs_no_gpu(tmp_path):
    from kfp import compiler

    path = tmp_path / "smoke.yaml"
    compiler.Compiler().compile(build(load_config("smoke")), str(path))
    executors = next(_spec(path))["deploymentSpec"]["executors"]
    assert "accelerator" not in executors["exec-distill"]["container"].get("resources", {})
    assert "s9_gpu_count" in executors["exec-train"]["container"]["resources"]["accelerator"]["resourceCount"]


@pytest.mark.parametrize(("profile", "overrides", "image"), [("full", [], "resumo-vllm"), ("smoke", [], "resumo-cpu"), ("smoke", ["distill.teacher.backend=transformers"], "resumo-train")])
def test_distill_runs_in_the_image_of_its_teacher_backend(tmp_path, profile, overrides, image):
    from kfp import compiler

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build(load_config(profile, overrides)), str(path))
    executors = next(_spec(path))["deploymentSpec"]["executors"]
    assert f"/{image}:" in executors["exec-distill"]["container"]["image"]


def _run_check(spec, **edits):
    """The check-parameters task as the cluster would run it: the compiled constant, the run's stage dicts."""
    from resumo.components.check import check_parameters

    task = spec["root"]["dag"]["tasks"]["check-parameters"]["inputs"]["parameters"]
    defaults = {name: p["defaultValue"] for name, p in spec["root"]["inputDefinitions"]["parameters"].items() if "defaultValue" in p}
    run = {**defaults, **edits}
    stages = {name: run[task[name]["componentInputParameter"]] for name in ("scrape", "distill", "tune", "train", "judge", "promote")}
    return check_parameters.python_func(compiled=task["compiled"]["runtimeValue"]["constant"], **stages)


@pytest.mark.parametrize(
    ("parameter", "key", "value", "compiled_value"),
    [
        ("s2_distill", "teacher.backend", "transformers", "vllm"),
        ("s3_tune", "backend", "optuna", "katib"),
        ("s3_tune", "retrain_best", True, False),
        ("s6_judge", "base_url", "http://judge:8000/v1", "unset"),
        ("s1_scrape", "workers", 2, 4),
    ],
)
def test_a_run_that_edits_a_compiled_choice_fails_in_its_first_task(compiled, parameter, key, value, compiled_value):
    # Each of these once changed nothing on a cluster: the image, the tasks or the CPU request
    # were fixed when the pipeline was compiled, whatever the run form said.
    from resumo.errors import ConfigError

    spec = next(_spec(compiled))
    assert _run_check(spec) is None  # the compiled defaults pass
    edited = json.loads(json.dumps(spec["root"]["inputDefinitions"]["parameters"][parameter]["defaultValue"]))
    section = edited
    *parents, leaf = key.split(".")
    for part in parents:
        section = section[part]
    section[leaf] = value
    shown = "set" if key == "base_url" else value
    with pytest.raises(ConfigError, match=rf"{parameter}: {key} is {shown!r} in this run, but the pipeline was compiled with {compiled_value!r}(.|\n)*resumo compile --set {parameter[3:]}.{key}="):
        _run_check(spec, **{parameter: edited})


def test_a_bad_value_in_the_run_form_fails_in_the_first_task(compiled):
    from resumo.errors import ConfigError

    spec = next(_spec(compiled))
    train = spec["root"]["inputDefinitions"]["parameters"]["s4_train"]["defaultValue"] | {"learning_rate": -1}
    with pytest.raises(ConfigError, match=r"^run parameter s4_train \(train\): invalid config: learning_rate = -1: "):
        _run_check(spec, s4_train=train)


def test_a_trainjob_backend_makes_train_a_cpu_launcher_whose_nodes_get_the_runs_gpus(tmp_path):
    """train.backend is a compile-time choice: the train task creates a TrainJob instead of training."""
    from resumo.components import CPU_IMAGE, TRAIN_IMAGE

    spec = _compile(tmp_path, "full", ["tune.retrain_best=true", "train.backend=trainjob", "train.trainjob.num_nodes=2"])
    task = spec["root"]["dag"]["tasks"]["train"]
    container = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert container["image"] == CPU_IMAGE and "accelerator" not in container.get("resources", {})
    params = task["inputs"]["parameters"]
    for field in ("accelerator", "count", "cpu", "memory", "tolerations", "node_selector"):
        assert params[f"gpu_{field}"] == {"componentInputParameter": f"s9_gpu_{field}"}, field
    # No run id among the inputs (it would miss KFP's cache every run): a key of the inputs names the TrainJob.
    assert "run_id" not in params
    assert params["s3_secret"]["runtimeValue"]["constant"] == "resumo-s3"  # the run's one S3 Secret
    assert task["retryPolicy"]["maxRetryCount"] == 3  # idempotent, so retried like the other launchers
    train_default = spec["root"]["inputDefinitions"]["parameters"]["s4_train"]["defaultValue"]
    assert (train_default["backend"], train_default["trainjob"]["num_nodes"], train_default["trainjob"]["image"]) == ("trainjob", 2, TRAIN_IMAGE)
    # After Katib without retraining, train only hands the best trial on, whatever the backend.
    adopted = _compile(tmp_path, "full", ["train.backend=trainjob"])
    assert "best_adapter" in adopted["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]


def test_a_vllm_teacher_shard_requests_the_gpus_it_shards_over(tmp_path):
    executor = "exec-distill"
    default = _compile(tmp_path, "full")["deploymentSpec"]["executors"][executor]["container"]["resources"]["accelerator"]
    assert "s9_gpu_count" in default["resourceCount"]  # unset: every GPU the run gives a GPU task, all of which vLLM uses
    sharded = _compile(tmp_path, "full", ["distill.teacher.tensor_parallel_size=4"])["deploymentSpec"]["executors"][executor]["container"]["resources"]["accelerator"]
    assert sharded["resourceCount"] == "4"

"""submit, runs and schedule with the real kfp.Client against a KFP v2beta1 API on loopback."""

from datetime import UTC, datetime

import pytest
import yaml
from typer.testing import CliRunner

from resumo.pipelines import cluster
from resumo.cli import app
from resumo.config import load_config
from resumo.errors import ConfigError, ResumoError
from tests.servers.kfp_api import KfpApiServer


@pytest.fixture
def kfp_api(monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "secret-token")
    with KfpApiServer() as api:
        yield api


def resumo(*args):
    return CliRunner().invoke(app, list(args), catch_exceptions=True)


def uploaded_spec(request):
    return next(yaml.safe_load_all(request.body["uploadfile"]))


def test_submit_uploads_the_validated_pipeline_and_prints_the_run_url(kfp_api):
    result = resumo("submit", "--host", kfp_api.url, "--set", "train.lora.r=16", "--run-date", "2026-03-01")
    assert result.exit_code == 0, result.output
    (run,) = kfp_api.state.runs.values()
    assert f"{kfp_api.url}/#/runs/details/{run['run_id']}" in result.output

    (upload,) = kfp_api.state.of("POST", "/pipelines/upload")
    assert upload.query["name"] == "resumo"
    spec = uploaded_spec(upload)
    assert spec["root"]["inputDefinitions"]["parameters"]["s4_train"]["defaultValue"]["lora"]["r"] == 16
    # The run refers to the uploaded version and passes only the run date; the rest are its defaults.
    (version,) = kfp_api.state.versions.values()
    assert run["pipeline_version_reference"] == {"pipeline_id": version["pipeline_id"], "pipeline_version_id": version["pipeline_version_id"]}
    assert run["runtime_config"]["parameters"] == {"s0_run_date": "2026-03-01"}
    assert run["experiment_id"] == next(iter(kfp_api.state.experiments))
    assert {r.headers.get("authorization") for r in kfp_api.state.requests} == {"Bearer secret-token"}


def test_a_second_submit_is_a_new_version_of_the_same_pipeline(kfp_api):
    for _ in range(2):
        assert resumo("submit", "--host", kfp_api.url).exit_code == 0
    assert len(kfp_api.state.pipelines) == 1 and len(kfp_api.state.versions) == 2
    assert len(kfp_api.state.of("POST", "/pipelines/upload_version")) == 1
    assert len(kfp_api.state.experiments) == 1  # found by name the second time
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert [r["runtime_config"]["parameters"]["s0_run_date"] for r in kfp_api.state.runs.values()] == [today, today]


@pytest.mark.parametrize(
    "args, message",
    [
        (["submit", "--set", "train.lora.r=0"], "train.lora.r = 0: Input should be greater than or equal to 1"),
        (["submit", "--set", "cluster.pipeline_root=bucket/x"], "cluster.pipeline_root = 'bucket/x'"),
        (["submit", "--run-date", "yesterday"], "--run-date 'yesterday' is not a date"),
        (["submit", "--set", "cluster.gpu.tolerations=[{key: gpu, operator: Maybe}]"], "operator 'Maybe' must be Equal or Exists"),
        (["submit", "--set", "cluster.gpu.memory=lots"], "cluster.gpu.memory = 'lots'"),
        (["schedule", "--cron", "0 3 * * 1"], "has 5 fields; KFP needs six fields, seconds first"),
        (["schedule", "--cron", "0 0 3 * * 8"], "is not valid"),
        (["schedule", "--cron", "0 0 0 31 2 *"], "never fires"),
        (["schedule", "--cron", "0 0 3 * * 1", "--set", "tune.lora_r=[0]"], "tune.lora_r"),
    ],
)
def test_invalid_input_is_refused_before_anything_is_sent(kfp_api, args, message):
    result = resumo(*args, "--host", kfp_api.url)
    assert isinstance(result.exception, ConfigError), result.output
    assert message in str(result.exception)
    assert kfp_api.state.requests == []


def test_schedule_creates_lists_and_deletes_a_recurring_retrain(kfp_api):
    result = resumo("schedule", "--host", kfp_api.url, "--cron", "0 0 3 * * 1", "--name", "weekly")
    assert result.exit_code == 0, result.output
    (job,) = kfp_api.state.recurring_runs.values()
    assert job["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * 1"}}
    assert int(job["max_concurrency"]) == 1 and job["no_catchup"] is True and job["mode"] == "ENABLE"
    assert job["display_name"] == "weekly"
    # Each scheduled run gets its own day as the run date, which keys scrape's cache.
    assert job["runtime_config"]["parameters"] == {"s0_run_date": "[[ScheduledTime.2006-01-02]]"}
    assert job["pipeline_version_reference"]["pipeline_version_id"] in kfp_api.state.versions

    again = resumo("schedule", "--host", kfp_api.url, "--cron", "0 0 4 * * 1", "--name", "weekly")
    assert isinstance(again.exception, ResumoError) and f"resumo schedule --delete {job['recurring_run_id']}" in str(again.exception)
    assert len(kfp_api.state.recurring_runs) == 1

    listed = resumo("schedule", "--host", kfp_api.url, "--list")
    assert job["recurring_run_id"] in listed.output and "0 0 3 * * 1" in listed.output and "weekly" in listed.output
    deleted = resumo("schedule", "--host", kfp_api.url, "--delete", job["recurring_run_id"])
    assert deleted.exit_code == 0 and kfp_api.state.recurring_runs == {}


def test_schedule_needs_exactly_one_action(kfp_api):
    result = resumo("schedule", "--host", kfp_api.url, "--list", "--delete", "x")
    assert isinstance(result.exception, ConfigError) and kfp_api.state.requests == []


def test_runs_lists_newest_first_with_urls(kfp_api):
    cfg = load_config("full", [f"cluster.host={kfp_api.url}"])
    client = cluster.connect(cfg.cluster)
    first = cluster.submit(cfg, run_name="first", client=client)
    second = cluster.submit(cfg, run_name="second", client=client)
    runs = cluster.list_runs(cfg.cluster, client)
    assert [r.run_id for r in runs] == [second.run_id, first.run_id]
    assert runs[0].url == f"{kfp_api.url}/#/runs/details/{second.run_id}" and runs[0].name == "second"
    listed = resumo("runs", "--host", kfp_api.url)
    assert listed.output.index("second") < listed.output.index("first")


def test_follow_polls_until_the_run_ends_and_prints_each_change(kfp_api):
    cfg = load_config("full", [f"cluster.host={kfp_api.url}"])
    client = cluster.connect(cfg.cluster)
    run_id = cluster.submit(cfg, client=client).run_id
    waits = []
    lines = list(cluster.follow(cfg.cluster, client, run_id, interval=7, sleep=waits.append))
    assert lines == ["  scrape: PENDING", f"run {run_id}: PENDING", "  scrape: RUNNING", f"run {run_id}: RUNNING", "  scrape: SUCCEEDED", f"run {run_id}: SUCCEEDED"]
    assert waits == [7, 7, 7]  # four polls, a wait between each


def test_follow_gives_up_after_max_polls(kfp_api):
    kfp_api.state.run_states = ["RUNNING"]
    cfg = load_config("full", [f"cluster.host={kfp_api.url}"])
    client = cluster.connect(cfg.cluster)
    run_id = cluster.submit(cfg, client=client).run_id
    with pytest.raises(ResumoError, match=f"still RUNNING after 3 polls; follow it again with `resumo runs --follow {run_id}`"):
        list(cluster.follow(cfg.cluster, client, run_id, interval=0, max_polls=3, sleep=lambda s: None))
    assert len(kfp_api.state.of("GET", f"/runs/{run_id}")) == 3


def test_api_refusals_and_unreachable_hosts_are_one_line_errors(kfp_api):
    from tests.conftest import free_port

    cfg = load_config("full", [f"cluster.host={kfp_api.url}"])
    with pytest.raises(ResumoError, match="answered 404: .*run nope not found"):
        list(cluster.follow(cfg.cluster, cluster.connect(cfg.cluster), "nope", sleep=lambda s: None))
    down = load_config("full", [f"cluster.host=http://127.0.0.1:{free_port()}"])
    with pytest.raises(ResumoError, match="cannot reach KFP at http://127.0.0.1"):
        cluster.submit(down)


def test_compile_refuses_an_invalid_value_and_writes_nothing(tmp_path):
    out = tmp_path / "resumo.yaml"
    result = resumo("compile", "--output", str(out), "--set", "cluster.gpu.count=0")
    assert isinstance(result.exception, ConfigError)
    assert "cluster.gpu.count = 0: Input should be greater than or equal to 1" in str(result.exception)
    assert not out.exists()

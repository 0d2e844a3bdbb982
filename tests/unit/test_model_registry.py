"""Promotion with Kubeflow Model Registry: the real `model-registry` client against a loopback server
that speaks (and checks) the spec in ../shared/schemas, and resumo's registry on a real S3 endpoint."""

import json
import logging
import shutil
import subprocess
import sys

import pytest

from resumo import model_registry, promote, registry_pointer, storage
from resumo.config import PromoteConfig
from resumo.errors import ConfigError
from resumo.model_registry import ModelRegistryUnavailable
from tests.servers.kube_api import schemas_dir
from tests.servers.model_registry import ModelRegistryServer
from tests.unit.test_promote import model_dir, scores  # noqa: F401 - model_dir is a fixture

TOKEN = "test-token"
JUDGE = {"baseline": {"win_rate": 0.75, "interval": [0.6, 0.9], "n_articles": 12}, "reference": {"win_rate": None, "interval": None, "n_articles": 0}}
LINEAGE = {"kfp_run_id": "run-1234", "pipeline_version": "0.1.0", "judge": JUDGE}


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", TOKEN)
    with ModelRegistryServer(schemas_dir(), token=TOKEN) as srv:
        yield srv
        assert srv.invalid == [], "requests or answers outside the spec"


@pytest.fixture
def adapter(model_dir):  # noqa: F811
    (model_dir / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA", "peft_version": "0.17.1"}))
    return model_dir


def config(s3: str, url: str, **model_registry) -> PromoteConfig:
    return PromoteConfig(registry=s3 + "/registry", model_registry={"url": url, **model_registry})


def versions(server) -> dict[str, dict]:
    return {v["name"]: v for v in server.versions.values()}


def labelled(server) -> list[str]:
    return sorted(name for name, v in versions(server).items() if "production" in v["customProperties"])


def test_off_by_default_talks_to_no_registry(s3, adapter):
    cfg = PromoteConfig(registry=s3 + "/registry")
    assert cfg.model_registry.url is None
    assert promote.run(cfg, adapter, scores(0.3)).promoted
    assert model_registry.follow_production(cfg) is None


def test_promotion_registers_the_model_the_version_its_artifact_and_metadata(server, s3, adapter):
    cfg = config(s3, server.url)
    result = promote.run(cfg, adapter, scores(0.3, bert=0.76, not_pt=0.01), lineage=LINEAGE)
    assert result.promoted
    pointer = registry_pointer.current_production(cfg.registry)
    assert pointer["lineage"] == LINEAGE  # resumo's registry records it too

    assert [m["name"] for m in server.models.values()] == ["resumo"]
    assert list(server.models.values())[0]["owner"] == "resumo"
    version = versions(server)[result.version]
    assert version["author"] == "resumo" and version["state"] == "LIVE"
    props = {k: v.get("string_value", v.get("double_value", v.get("int_value"))) for k, v in version["customProperties"].items()}
    assert props["production"] == ""  # a label, as the Model Registry UI stores one
    assert props["kfp_run_id"] == "run-1234" and props["pipeline_version"] == "0.1.0"
    assert props["base_model"] == "tiny:qwen2" and props["lora_r"] == "8" and props["lora_alpha"] == 16.0 and props["lora_dropout"] == 0.05
    assert props["lora_target_modules"] == "q_proj"
    assert (props["rougeLsum"], props["rougeLsum_low"], props["rougeLsum_high"]) == (0.3, pytest.approx(0.28), pytest.approx(0.32))
    assert props["bertscore_f1"] == 0.76 and props["not_portuguese_share"] == 0.01
    assert (props["judge_win_rate_vs_baseline"], props["judge_win_rate_vs_baseline_low"], props["judge_win_rate_vs_baseline_high"]) == (0.75, 0.6, 0.9)
    assert not any(k.startswith("judge_win_rate_vs_reference") for k in props)  # no valid verdicts: no number
    assert version["customProperties"]["rougeLsum"]["metadataType"] == "MetadataDoubleValue"

    (artifact,) = server.artifacts.values()
    assert artifact["artifactType"] == "model-artifact" and artifact["uri"] == pointer["model"] and artifact["uri"].startswith("s3://")
    assert (artifact["modelFormatName"], artifact["modelFormatVersion"]) == ("peft-lora", "0.17.1")
    assert server.version_artifacts[version["id"]] == [artifact["id"]]
    # The released client speaks /api/model_registry/v1; with a bearer token on every call.
    assert all(path.startswith("/api/model_registry/v1/") for _, path, _ in server.requests)


def test_a_rerun_registers_nothing_new_and_the_label_follows_production(server, s3, adapter):
    cfg = config(s3, server.url)
    first = promote.run(cfg, adapter, scores(0.3), lineage=LINEAGE)
    writes = server.writes()
    assert writes == [("POST", "/registered_models"), ("POST", "/model_versions"), ("POST", f"/model_versions/{versions(server)[first.version]['id']}/artifacts")]

    rerun = promote.run(cfg, adapter, scores(0.3), lineage=LINEAGE)  # a retried task: same inputs
    # It reports the first attempt's promotion (resumo.promote) and registers nothing new.
    assert rerun.promoted and rerun.version == first.version and server.writes() == writes and len(server.versions) == 1

    second = promote.run(cfg, adapter, scores(0.4), lineage={**LINEAGE, "kfp_run_id": "run-5678"})
    assert second.promoted and labelled(server) == [second.version]
    assert sorted(versions(server)) == sorted([first.version, second.version])
    old = versions(server)[first.version]["customProperties"]
    assert "production" not in old and old["kfp_run_id"]["string_value"] == "run-1234"  # everything else stays
    assert versions(server)[second.version]["customProperties"]["replaced_version"]["string_value"] == first.version


def test_a_worse_candidate_registers_nothing(server, s3, adapter):
    cfg = config(s3, server.url, model_name="resumo-pt")
    first = promote.run(cfg, adapter, scores(0.3))
    writes = server.writes()
    for worse in (scores(0.2), scores(0.4, bert=0.7)):
        assert not promote.run(cfg, adapter, worse).promoted
    assert server.writes() == writes and list(versions(server)) == [first.version] and labelled(server) == [first.version]
    assert [m["name"] for m in server.models.values()] == ["resumo-pt"]


@pytest.mark.parametrize("fails_at", ["/model_versions", "/artifacts", "down"])
def test_a_registry_failure_after_the_move_keeps_production_and_the_retry_registers_it(server, s3, adapter, fails_at):
    """A 503 before the version is created, one between the version and its artifact, and no registry at all."""
    from tests.conftest import free_port

    cfg = config(s3, server.url)
    failing = config(s3, f"http://127.0.0.1:{free_port()}") if fails_at == "down" else cfg  # nothing listens there
    if fails_at != "down":
        server.fail_next("POST", fails_at, status=503)
    with pytest.raises(ModelRegistryUnavailable) as failed:
        promote.run(failing, adapter, scores(0.3), lineage=LINEAGE)
    message = str(failed.value)
    production = registry_pointer.current_production(cfg.registry, verify=True)
    assert production is not None and "\n" not in message and message.startswith(f"Model Registry at {failing.model_registry.url}: ")
    assert f"resumo's production is {production['version']}" in message and message.endswith("promoted and kept; a retry registers it")
    assert ("HTTP 503 the registry is restarting (injected)" in message) if fails_at != "down" else ("ClientConnectorError" in message)
    assert len(server.artifacts) == 0

    retry = promote.run(cfg, adapter, scores(0.3), lineage=LINEAGE)  # KFP's retry: same inputs, a new version id
    assert retry.promoted and retry.version == production["version"]  # the first attempt's promotion, reported again
    assert list(versions(server)) == [production["version"]] and labelled(server) == [production["version"]]
    (artifact,) = server.artifacts.values()
    assert artifact["uri"] == production["model"] and artifact["modelFormatName"] == "peft-lora"
    assert versions(server)[production["version"]]["customProperties"]["kfp_run_id"]["string_value"] == "run-1234"
    assert promote.run(cfg, adapter, scores(0.3), lineage=LINEAGE) and len(server.artifacts) == 1  # and a third time, nothing


def test_a_promotion_landing_during_registration_gets_the_label(server, s3, adapter):
    """Another promote moves production.json while this one registers: Model Registry must end on the newer."""
    cfg = config(s3, server.url)
    off = PromoteConfig(registry=cfg.registry)  # the other promote, before it reaches Model Registry
    landed = []
    server.before_next("POST", "/model_versions", lambda: landed.append(promote.run(off, adapter, scores(0.5), version="20990101T000000000000Z")))
    first = promote.run(cfg, adapter, scores(0.3), version="20980101T000000000000Z")
    assert first.promoted and landed[0].promoted
    assert sorted(versions(server)) == [first.version, landed[0].version] and labelled(server) == [landed[0].version]


def test_the_component_fails_with_one_line_after_publishing(server, s3, adapter, tmp_path):
    from kfp import dsl

    from resumo.components.promote import promote as component

    shutil.copytree(adapter, tmp_path / "model" / "adapter")
    (tmp_path / "scores").mkdir()
    (tmp_path / "scores" / "scores.json").write_text(json.dumps(scores(0.3)))
    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / "judge.json").write_text(json.dumps({"candidate": "tuned", "opponents": JUDGE}))
    cfg = config(s3, server.url)

    def call():
        component.python_func(
            config=cfg.model_dump(),
            model=dsl.Model(uri=str(tmp_path / "model")),
            scores=dsl.Artifact(uri=str(tmp_path / "scores")),
            decision=dsl.Artifact(uri=str(tmp_path / "decision.json")),
            metrics=dsl.Metrics(uri=str(tmp_path / "m")),
            judge=dsl.Artifact(uri=str(tmp_path / "judge")),
            run_id="run-abcd",
        )

    server.fail_next("GET", "/registered_model", status=500)
    with pytest.raises(ModelRegistryUnavailable, match=r"^Model Registry at .*: HTTP 500 .*; a retry registers it$"):
        call()
    production = registry_pointer.current_production(cfg.registry)
    assert production["lineage"]["kfp_run_id"] == "run-abcd" and not server.versions
    call()  # the retry
    props = versions(server)[production["version"]]["customProperties"]
    assert props["kfp_run_id"]["string_value"] == "run-abcd" and props["judge_win_rate_vs_baseline"]["double_value"] == 0.75


def test_token_from_a_file_and_a_clear_error_without_one(server, s3, adapter, monkeypatch, tmp_path):
    monkeypatch.delenv("MODEL_REGISTRY_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    cfg = config(s3, server.url, token_file=str(token_file))
    assert promote.run(cfg, adapter, scores(0.3)).promoted and len(server.versions) == 1

    token_file.write_text("wrong")
    with pytest.raises(ModelRegistryUnavailable, match="HTTP 401 missing or wrong bearer token"):
        model_registry.follow_production(cfg)
    with pytest.raises(ConfigError, match="token_file = '/nowhere': No such file"):
        model_registry.follow_production(config(s3, server.url, token_file="/nowhere"))
    # https verifies TLS and so needs a token: the client refuses to send nothing.
    with pytest.raises(ConfigError, match=r"no bearer token for https://127.0.0.1:1; set \$MODEL_REGISTRY_TOKEN"), pytest.warns(UserWarning, match="token is missing"):
        model_registry.connect(config(s3, "https://127.0.0.1:1", token_file=None).model_registry)


def test_tls_is_verified_unless_turned_off(s3, adapter, tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", TOKEN)
    cert, key = _self_signed(tmp_path)
    with ModelRegistryServer(schemas_dir(), token=TOKEN, tls=(cert, key)) as server:
        assert server.url.startswith("https://127.0.0.1:")
        with pytest.raises(ModelRegistryUnavailable, match="certificate verify failed"):
            promote.run(config(s3, server.url), adapter, scores(0.3))
        assert not server.versions
        promote.run(config(s3, server.url, ca_bundle=str(cert)), adapter, scores(0.3))  # the retry, trusting our CA
        assert len(server.versions) == 1
        promote.run(config(s3, server.url, verify_tls=False), adapter, scores(0.4))  # verification off
        assert len(server.versions) == 2 and server.invalid == []


def test_registry_list_and_show_read_both_registries(server, s3, adapter):
    from typer.testing import CliRunner

    from resumo.cli import app

    cfg = config(s3, server.url)
    first = promote.run(cfg, adapter, scores(0.3), lineage=LINEAGE)
    second = promote.run(cfg, adapter, scores(0.4), lineage={**LINEAGE, "kfp_run_id": "run-5678"})  # the next run
    storage.write_text(storage.join(cfg.registry, "models/20990101T000000000000Z/model/x"), "cut off")  # a crash mid-publish
    sets = ["--set", f"promote.registry={cfg.registry}", "--set", f"promote.model_registry.url={server.url}"]

    listed = CliRunner().invoke(app, ["registry", "list", *sets])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()  # the listing; a log line on stderr is not part of it
    ids = {name: v["id"] for name, v in versions(server).items()}
    assert lines[1:] == [
        f"{'20990101T000000000000Z':26}  {'incomplete':10}  not registered",
        f"{second.version:26}  {'production':10}  id {ids[second.version]}, LIVE, label production",
        f"{first.version:26}  {'published':10}  id {ids[first.version]}, LIVE",
    ]
    off = CliRunner().invoke(app, ["registry", "list", "--set", f"promote.registry={cfg.registry}"])
    assert off.exit_code == 0 and off.stdout.splitlines()[2] == f"{second.version:26}  production"

    shown = CliRunner().invoke(app, ["registry", "show", second.version, *sets])
    assert shown.exit_code == 0, shown.output
    described = json.loads(shown.stdout)
    assert described["resumo"]["production"] and described["resumo"]["scores"]["rougeLsum"] == 0.4
    assert described["resumo"]["lineage"]["kfp_run_id"] == "run-5678"
    mr = described["model_registry"]
    assert mr["production"] and mr["artifact"]["uri"] == described["resumo"]["model"] and mr["artifact"]["format"] == "peft-lora 0.17.1"
    assert mr["storage_uri"] == f"model-registry://resumo/{second.version}"
    missing = CliRunner().invoke(app, ["registry", "show", "nope", *sets])
    assert missing.exit_code != 0 and "version 'nope' is not in" in str(missing.exception)


def test_the_server_refuses_what_the_spec_does_not_allow(server):
    """The stand-in must be able to fail: a misspelt field and a wrong type are 400, under either prefix."""
    import urllib.error
    import urllib.request

    def post(path, body):
        request = urllib.request.Request(server.url + path, json.dumps(body).encode(), {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        try:
            with urllib.request.urlopen(request) as answer:
                return answer.status
        except urllib.error.HTTPError as err:
            return err.code

    assert post("/api/model_registry/v1alpha3/registered_models", {"name": "resumo"}) == 201
    assert post("/api/model_registry/v1/registered_models", {"name": "other", "ownr": "x"}) == 400
    assert post("/api/model_registry/v1/model_versions", {"name": "v1", "registeredModelId": "1", "customProperties": {"r": {"int_value": 8, "metadataType": "MetadataStringValue"}}}) == 400
    found = "\n".join(server.invalid)
    assert {e.split(":")[0] for e in server.invalid} == {"POST /registered_models", "POST /model_versions"}
    assert "'ownr' was unexpected" in found and "'int_value' was unexpected" in found, found
    server.invalid.clear()


def _self_signed(tmp_path):
    """A certificate for 127.0.0.1 that signs itself (its own CA)."""
    from datetime import UTC, datetime, timedelta
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "model-registry test CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def test_importing_the_client_leaves_the_root_logger_as_it_was():
    # model_registry's client calls logging.basicConfig on import. In a process whose root logger
    # has no handler (a library caller, a test worker), that bound a handler to the sys.stderr of
    # the moment: a CliRunner's, closed once it returned, so every later log line in the worker
    # printed "Logging error ... I/O operation on closed file" into other tests' output. Checked in a
    # fresh interpreter, where nothing has imported the client yet.
    check = (
        "import logging, sys\n"
        "from resumo import model_registry\n"
        "model_registry._import_client()\n"
        "assert 'model_registry._client' in sys.modules\n"
        "root = logging.getLogger()\n"
        "print(len(root.handlers), root.level)\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", str(logging.WARNING)]  # no handler, and the default level

"""Promotion against a local registry and a real S3 endpoint (moto's server on loopback)."""

import json
import multiprocessing
import threading

import pytest

from resumo import artifacts, promote, registry_pointer, score, storage
from resumo.config import PromoteConfig
from resumo.errors import ConfigError, DataError

OLDER, NEWER = "20260101T000000000000Z", "20260102T000000000000Z"


def scores(rouge: float, bert: float = 0.75, not_pt: float = 0.0, production: dict | None = None) -> dict:
    models = {"baseline": {"rougeLsum": 0.1, "bertscore_f1": 0.7}, "tuned": {"rougeLsum": rouge, "bertscore_f1": bert, "not_portuguese_share": not_pt}}
    if production:
        models["production"] = production
    return {"models": models, "n_articles": 13, "intervals": {"tuned": {"rougeLsum": [rouge - 0.02, rouge + 0.02]}}}


@pytest.fixture
def model_dir(tmp_path):
    path = tmp_path / "adapter"
    (path / "sub").mkdir(parents=True)
    (path / "adapter_config.json").write_text('{"r": 8}')
    (path / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 4)
    (path / "sub" / "extra.txt").write_text("x")
    meta = {"base_model": "tiny:qwen2", "prompt": {"version": "pt-v1", "n_words": 40}, "lora": {"r": 8, "alpha_ratio": 2.0, "dropout": 0.05, "target_modules": ["q_proj"]}, "config": {"learning_rate": 0.01, "epochs": 2}}
    (path / "resumo_model.json").write_text(json.dumps(meta))
    return path


@pytest.fixture(params=["file", "s3"])
def registry(request, tmp_path):
    return str(tmp_path / "registry") if request.param == "file" else request.getfixturevalue("s3") + "/registry"


def pointer_bytes(registry: str) -> bytes:
    return storage.read_bytes(storage.join(registry, artifacts.POINTER))


def published_versions(registry: str) -> list[str]:
    return sorted({k.split("/")[0] for k in storage.list_keys(storage.join(registry, "models"))})


def test_first_model_is_published_with_a_verified_manifest_and_a_model_card(registry, model_dir, tmp_path):
    report = tmp_path / "report.html"
    report.write_text("<html>report</html>")
    result = promote.run(PromoteConfig(registry=registry), model_dir, scores(0.3), report_html=report)
    assert result.promoted and result.production_score is None and all(g.passed for g in result.gates)

    pointer = registry_pointer.current_production(registry, verify=True)
    assert pointer["version"] == result.version and pointer["score"] == 0.3 and pointer["scores"]["bertscore_f1"] == 0.75
    assert storage.list_keys(pointer["model"]) == ["adapter_config.json", "adapter_model.safetensors", "resumo_model.json", "sub/extra.txt"]
    manifest = json.loads(storage.read_text(pointer["manifest"]))
    assert set(manifest["files"]) == {f"model/{k}" for k in storage.list_keys(pointer["model"])} | {"scores.json", "report.html", "MODEL_CARD.md"}
    assert manifest["files"]["model/adapter_model.safetensors"]["size"] == 1024
    card = storage.read_text(pointer["card"])
    assert "Tiny random model" in card and "| LoRA r / alpha / dropout | 8 / 16 / 0.05 |" in card
    assert "| **tuned** | 0.300 [0.280, 0.320] | 0.750 | 0.0% |" in card  # shares as percentages, as in the report (resumo.report) and "13 held-out test articles" in card


def test_worse_candidate_leaves_production_untouched(registry, model_dir):
    first = promote.run(PromoteConfig(registry=registry), model_dir, scores(0.3))
    before = pointer_bytes(registry)
    cfg = PromoteConfig(registry=registry, max_bertscore_drop=0.01, max_not_portuguese=0.05)
    refused = {
        "equal ROUGE-Lsum": scores(0.3),
        "lower ROUGE-Lsum": scores(0.2),
        "BERTScore falls too far": scores(0.4, bert=0.735),
        "too much non-Portuguese": scores(0.4, not_pt=0.06),
    }
    for case, candidate in refused.items():
        result = promote.run(cfg, model_dir, candidate)
        assert not result.promoted and result.version is None, case
        assert [g.name for g in result.gates if not g.passed] == [
            {"equal ROUGE-Lsum": "rougeLsum", "lower ROUGE-Lsum": "rougeLsum", "BERTScore falls too far": "bertscore_f1", "too much non-Portuguese": "not_portuguese_share"}[case]
        ]
    assert pointer_bytes(registry) == before
    assert published_versions(registry) == [first.version]  # nothing was even uploaded
    assert promote.run(cfg, model_dir, scores(0.4, bert=0.745, not_pt=0.05)).promoted  # inside every tolerance


def test_margin_and_same_article_production_scores(registry, model_dir):
    promote.run(PromoteConfig(registry=registry), model_dir, scores(0.30))
    cfg = PromoteConfig(registry=registry, min_improvement=0.05)
    assert not promote.run(cfg, model_dir, scores(0.34)).promoted
    # Production scored on the same articles (0.40) is what counts, not its stored 0.30.
    same = promote.run(cfg, model_dir, scores(0.36, production={"rougeLsum": 0.40, "bertscore_f1": 0.7}))
    assert not same.promoted and same.gates[0].detail.endswith("production 0.4000 by more than 0.05")
    assert same.production_score == 0.40  # the number the gate names, not the pointer's 0.30
    result = promote.run(cfg, model_dir, scores(0.36))
    assert result.promoted and result.production_score == 0.30
    assert registry_pointer.current_production(registry)["previous"] is not None


def test_score_adds_production_once_there_is_one(registry, model_dir):
    models = {"baseline": "tiny:qwen2", "tuned": str(model_dir)}
    assert score.with_production(models, registry, "production") == models  # nothing promoted yet
    first = promote.run(PromoteConfig(registry=registry), model_dir, scores(0.3))
    compared = score.with_production(models, registry, "production")
    assert compared == {**models, "production": storage.join(registry, f"models/{first.version}/model")}
    with pytest.raises(ConfigError, match="production_name 'tuned'"):
        score.with_production(models, registry, "tuned")


def test_production_scored_before_the_last_promotion_is_not_trusted(registry, model_dir, caplog):
    first = promote.run(PromoteConfig(registry=registry), model_dir, scores(0.30))
    second = promote.run(PromoteConfig(registry=registry), model_dir, scores(0.40))
    # A cached score step: production there is the first version, scored at 0.45 on these articles.
    stale = scores(0.42, production={"rougeLsum": 0.45, "bertscore_f1": 0.7})
    stale["models_scored"] = {"production": storage.join(registry, f"models/{first.version}/model")}
    result = promote.run(PromoteConfig(registry=registry), model_dir, stale)
    assert result.promoted and result.production_score == 0.40  # judged against the second's stored score
    assert f"no longer production ({storage.join(registry, f'models/{second.version}/model')})" in caplog.text
    current = scores(0.42, production={"rougeLsum": 0.45, "bertscore_f1": 0.7})
    current["models_scored"] = {"production": registry_pointer.current_production(registry)["model"]}
    assert not promote.run(PromoteConfig(registry=registry), model_dir, current).promoted


def test_missing_scores_are_clear_errors(tmp_path, model_dir):
    cfg = PromoteConfig(registry=str(tmp_path))
    with pytest.raises(DataError, match="no model 'tuned'"):
        promote.run(cfg, model_dir, {"models": {}})
    no_language = scores(0.3)
    del no_language["models"]["tuned"]["not_portuguese_share"]
    with pytest.raises(DataError, match="no 'not_portuguese_share' for model 'tuned'; set promote.max_not_portuguese=null"):
        promote.run(cfg, model_dir, no_language)
    assert promote.run(PromoteConfig(registry=str(tmp_path), max_not_portuguese=None), model_dir, no_language).promoted


@pytest.mark.parametrize("fail_at", [3, "pointer"])
def test_crash_mid_publish_leaves_the_old_pointer_valid(registry, model_dir, monkeypatch, fail_at):
    first = promote.run(PromoteConfig(registry=registry), model_dir, scores(0.3))
    before = pointer_bytes(registry)
    real_write, real_cas, writes = storage.write_bytes, storage.write_if_unchanged, []

    def crashing_write(uri, data):
        writes.append(uri)
        if len(writes) == fail_at:
            raise OSError("disk full (injected)")
        real_write(uri, data)

    def crashing_cas(uri, data, tag):
        raise OSError("killed before the pointer moved (injected)")

    monkeypatch.setattr(storage, "write_bytes", crashing_write)
    if fail_at == "pointer":
        monkeypatch.setattr(storage, "write_if_unchanged", crashing_cas)
    with pytest.raises(OSError, match="injected"):
        promote.run(PromoteConfig(registry=registry), model_dir, scores(0.5))
    assert fail_at == "pointer" or len(writes) == fail_at  # it crashed with files of the new version on disk
    monkeypatch.setattr(storage, "write_bytes", real_write)
    monkeypatch.setattr(storage, "write_if_unchanged", real_cas)

    assert pointer_bytes(registry) == before
    assert registry_pointer.current_production(registry, verify=True)["version"] == first.version  # the files it names are intact
    assert len(published_versions(registry)) == 2  # the half-written version is there, never pointed at
    retry = promote.run(PromoteConfig(registry=registry), model_dir, scores(0.5))
    assert retry.promoted and registry_pointer.current_production(registry, verify=True)["version"] == retry.version


def test_verify_detects_a_file_changed_after_publishing(registry, model_dir):
    result = promote.run(PromoteConfig(registry=registry), model_dir, scores(0.3))
    storage.write_bytes(storage.join(registry, f"models/{result.version}/model/adapter_config.json"), b'{"r": 64}')
    with pytest.raises(DataError, match="adapter_config.json reads back as 9 bytes"):
        registry_pointer.current_production(registry, verify=True)


@pytest.mark.parametrize("first_to_land", ["older", "newer"])
def test_two_concurrent_promotions_leave_the_newer_in_place(registry, model_dir, monkeypatch, first_to_land):
    """Both read the same pointer and publish their files; then one moves the pointer before the other tries.

    The newer must end in production either way: landing second it is judged
    again against the older (and beats it); landing first, the older sees a
    newer version and stands down, even with a better score.
    """
    promote.run(PromoteConfig(registry=registry), model_dir, scores(0.3), version="20250101T000000000000Z")
    real_cas = storage.write_if_unchanged
    both_published, landed = threading.Barrier(2, timeout=60), threading.Event()
    attempts: list[str] = []

    def ordered_cas(uri, data, tag):
        me = threading.current_thread().name
        if me not in attempts:  # first attempt of each thread: hold both at the pointer with the same tag
            attempts.append(me)
            both_published.wait()
            if me != first_to_land:
                assert landed.wait(timeout=60)
        try:
            return real_cas(uri, data, tag)
        finally:
            if me == first_to_land:
                landed.set()

    monkeypatch.setattr(storage, "write_if_unchanged", ordered_cas)
    # Scores chosen so that the newer never wins on score alone when it lands first.
    candidates = {"older": (OLDER, 0.45 if first_to_land == "newer" else 0.35), "newer": (NEWER, 0.40)}
    results, errors = {}, []

    def promote_as(name):
        try:
            version, rouge = candidates[name]
            results[name] = promote.run(PromoteConfig(registry=registry), model_dir, scores(rouge), version=version)
        except BaseException as err:  # surfaced below; a thread would swallow it
            errors.append(err)

    threads = [threading.Thread(target=promote_as, args=(name,), name=name) for name in candidates]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert results["newer"].promoted
    assert results["older"].promoted == (first_to_land == "older")
    if first_to_land == "newer":
        assert "a newer version" in results["older"].reason
    pointer = registry_pointer.current_production(registry, verify=True)
    assert pointer["version"] == NEWER and pointer["previous"] == (OLDER if first_to_land == "older" else "20250101T000000000000Z")


def _promote_in_process(registry: str, model_dir: str, version: str, rouge: float) -> None:
    promote.run(PromoteConfig(registry=registry), model_dir, scores(rouge), version=version)


def test_racing_processes_end_with_the_newest_version(tmp_path, model_dir):
    """No choreography: four processes race on a local registry; the newest (and best) must win.

    Local only: moto's server checks If-Match and then writes in two steps without
    a lock, so unchoreographed racers could both pass there (S3 and MinIO check
    atomically); the choreographed test above covers the S3 protocol.
    """
    registry = str(tmp_path / "registry")
    versions = [f"2026010{i}T000000000000Z" for i in range(1, 5)]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_promote_in_process, args=(registry, str(model_dir), v, 0.3 + 0.01 * i)) for i, v in enumerate(versions)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert registry_pointer.current_production(registry, verify=True)["version"] == versions[-1]


def test_component_publishes_the_report_page_and_logs_each_gate(tmp_path, model_dir):
    import shutil

    from kfp import dsl

    from resumo.components.promote import promote as component

    shutil.copytree(model_dir, tmp_path / "model" / "adapter")
    (tmp_path / "scores").mkdir()
    (tmp_path / "scores" / "scores.json").write_text(json.dumps(scores(0.3)))
    (tmp_path / "report.html").write_text("<html>scores</html>")  # the report step's HTML artifact
    config = PromoteConfig(registry=str(tmp_path / "registry")).model_dump()
    decision, metrics = dsl.Artifact(uri=str(tmp_path / "decision.json")), dsl.Metrics(uri=str(tmp_path / "m"))
    component.python_func(
        config=config,
        model=dsl.Model(uri=str(tmp_path / "model")),
        scores=dsl.Artifact(uri=str(tmp_path / "scores")),
        decision=decision,
        metrics=metrics,
        report=dsl.HTML(uri=str(tmp_path / "report.html")),
    )
    result = json.loads((tmp_path / "decision.json").read_text())
    assert result["promoted"] and metrics.metadata == {"promoted": 1, "gate_rougeLsum_passed": 1, "gate_bertscore_f1_passed": 1, "gate_not_portuguese_share_passed": 1}
    pointer = registry_pointer.current_production(config["registry"], verify=True)
    assert storage.read_text(storage.join(config["registry"], f"models/{pointer['version']}/report.html")) == "<html>scores</html>"


def test_a_retried_promote_reports_its_first_attempts_promotion_and_publishes_nothing_more(registry, model_dir):
    # The first attempt moved the pointer, then failed (Model Registry down, the pod lost).
    # The retry once judged the model against itself, said "kept", and the run's summary lied.
    lineage = {"kfp_run_id": "run-7"}
    first = promote.run(PromoteConfig(registry=registry), model_dir, scores(0.3), lineage=lineage)
    retried = promote.run(PromoteConfig(registry=registry), model_dir, scores(0.3), lineage=lineage)
    assert first.promoted and retried.promoted and retried.version == first.version
    assert "run-7" in retried.reason and [g.name for g in retried.gates] == [g.name for g in first.gates]
    assert published_versions(registry) == [first.version]
    # Another run with the same scores is judged as before: it does not beat production.
    other = promote.run(PromoteConfig(registry=registry), model_dir, scores(0.3), lineage={"kfp_run_id": "run-8"})
    assert not other.promoted and registry_pointer.current_production(registry)["version"] == first.version


def with_lead(scored: dict, low: float, difference: float = 0.01) -> dict:
    return scored | {"versus_lead": {"tuned": {"rougeLsum": {"difference": difference, "interval": [low, difference + 0.01], "n": 13}}}}


def test_the_lead_gate_is_off_by_default_and_refuses_a_candidate_that_does_not_beat_copying(tmp_path, model_dir):
    # off: no gate, even for a candidate that does worse than the lead
    result = promote.run(PromoteConfig(registry=str(tmp_path / "off")), model_dir, with_lead(scores(0.3), low=-0.05, difference=-0.03))
    assert result.promoted and "versus_lead" not in [g.name for g in result.gates]
    cfg = PromoteConfig(registry=str(tmp_path / "on"), min_lead_difference=0.0)
    # an interval that reaches below 0: it cannot be told from copying the opening, so it is refused
    kept = promote.run(cfg, model_dir, with_lead(scores(0.3), low=-0.001))
    assert not kept.promoted and [g.name for g in kept.gates if not g.passed] == ["versus_lead"]
    assert "rougeLsum +0.0100 against the lead at its own length, interval from -0.0010: not above 0.0" in kept.reason
    assert registry_pointer.current_production(str(tmp_path / "on")) is None
    published = promote.run(cfg, model_dir, with_lead(scores(0.3), low=0.002))
    assert published.promoted and published.gates[-1].name == "versus_lead" and published.gates[-1].passed
    with pytest.raises(DataError, match="min_lead_difference=null"):
        promote.run(cfg, model_dir, scores(0.3))  # scored without the lead baselines


def test_a_language_no_output_was_long_enough_to_judge_passes_only_a_bound_of_one(tmp_path, model_dir):
    undetermined = scores(0.3, not_pt=None)
    kept = promote.run(PromoteConfig(registry=str(tmp_path / "strict")), model_dir, undetermined)
    assert not kept.promoted and "no output long enough to judge its language" in kept.reason
    assert promote.run(PromoteConfig(registry=str(tmp_path / "smoke"), max_not_portuguese=1.0), model_dir, undetermined).promoted

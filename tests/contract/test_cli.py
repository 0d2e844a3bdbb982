"""The command line: every --help works; user errors are one line, exit 2, no traceback."""

import subprocess
import sys

import pytest

COMMANDS = ["config", "scrape", "distill", "train", "tune", "score", "judge", "summarize", "promote", "compile", "run", "submit", "runs", "schedule"]


def resumo(*args):
    return subprocess.run([sys.executable, "-c", "from resumo.cli import main; main()", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command):
    result = resumo(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Example: resumo" in result.stdout


def assert_one_line_error(result, pattern):
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and pattern in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


def test_out_of_range_value_fails_before_any_work(tmp_path):
    result = resumo("scrape", "--out", str(tmp_path / "a"), "--set", "train.lora.r=0")
    assert_one_line_error(result, "train.lora.r = 0: Input should be greater than or equal to 1")
    assert not (tmp_path / "a").exists()


def test_malformed_dump_is_one_line(tmp_path):
    dump = tmp_path / "dump.xml"
    dump.write_text("<mediawiki><page><title>x</title>")
    assert_one_line_error(resumo("scrape", "--dump", str(dump), "--out", str(tmp_path / "a")), "malformed")


def test_unreachable_s3_is_one_line(tmp_path, monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    result = resumo("scrape", "--dump", "s3://bucket/dump.xml", "--out", str(tmp_path / "a"))
    assert_one_line_error(result, "cannot reach the S3 endpoint")


def test_compile_writes_the_validated_pipeline_with_the_overrides_as_defaults(tmp_path):
    import yaml

    result = resumo("compile", "--output", str(tmp_path / "p.yaml"), "--set", "train.lora.r=32")
    assert result.returncode == 0, result.stderr
    spec = next(yaml.safe_load_all((tmp_path / "p.yaml").read_text()))
    assert spec["pipelineInfo"]["name"] == "resumo"
    assert {"scrape", "train", "score", "promote"} <= set(spec["root"]["dag"]["tasks"])
    train_defaults = spec["root"]["inputDefinitions"]["parameters"]["s4_train"]["defaultValue"]
    assert (train_defaults["lora"]["r"], train_defaults["lora"]["alpha_ratio"]) == (32, 2.0)  # the override, beside the profile's alpha = 2r
    assert train_defaults["student"] == "Qwen/Qwen2.5-0.5B-Instruct"  # the full profile by default


def test_summarize_refuses_to_overwrite_an_input_column(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "Um texto curto.", "summary": "Uma referência."}\n')
    result = resumo("summarize", "--model", "tiny:qwen2", "--in", str(source), "--out", str(tmp_path / "o.jsonl"), "--column", "summary")
    assert_one_line_error(result, "already has a column 'summary', which --column summary would overwrite")
    assert not (tmp_path / "o.jsonl").exists()

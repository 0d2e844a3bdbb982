import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from resumo import models

pytestmark = pytest.mark.numerics  # make test-kernels reruns these on other CPU kernels


def test_tiny_bert_tokenizer_has_the_corpus_vocabulary():
    tokenizer = AutoTokenizer.from_pretrained(models.resolve("tiny:bert"))
    assert len(tokenizer) > 1000  # a WordPiece vocabulary learnt from the bundled corpus, not just the specials
    tokens = tokenizer.tokenize("A cidade de Lisboa")
    assert tokenizer.unk_token not in tokens and tokens[0] == "A"  # cased, like mBERT


def test_an_s3_model_is_downloaded_once_and_whole(s3, tmp_path, monkeypatch):
    from resumo import storage

    monkeypatch.setenv("RESUMO_CACHE", str(tmp_path / "cache"))
    adapter = f"{s3}/registry/models/v1/model"  # an adapter has no config.json, only adapter_config.json
    storage.write_text(f"{adapter}/adapter_config.json", '{"r": 8}')
    storage.write_bytes(f"{adapter}/adapter_model.safetensors", b"weights")

    real_download, calls = storage.download, []

    def failing_then_real(uri, local):
        calls.append(uri)
        if len(calls) == 1:
            real_download(uri, local)
            raise OSError("connection reset (injected)")  # after the files, before the marker
        return real_download(uri, local)

    monkeypatch.setattr(storage, "download", failing_then_real)
    with pytest.raises(OSError, match="injected"):
        models.resolve(adapter)
    assert not list((tmp_path / "cache" / "s3").iterdir())  # nothing half-done is left to be trusted
    local = models.resolve(adapter)
    assert models.resolve(adapter) == local and len(calls) == 2  # the third call downloads nothing
    assert sorted(p.name for p in Path(local).iterdir()) == [models.DOWNLOADED, "adapter_config.json", "adapter_model.safetensors"]


@pytest.mark.parametrize("model", models.TINY_MODELS)
def test_a_shipped_tiny_model_is_whole_and_built_from_the_bundled_corpus(model):
    """The files are those `make tiny-models` wrote, from today's corpus and builder."""
    folder = models.tiny_model_dir(model.removeprefix("tiny:"))
    marker = json.loads((folder / models.TINY_MARKER).read_text())
    assert {k: marker[k] for k in ("model", "corpus_sha256", "build_version")} == models.tiny_build_inputs(model.removeprefix("tiny:")), (
        "the corpus or the builder changed since the tiny models were built: run `make tiny-models` and commit src/resumo/data/tiny"
    )
    assert models.file_digests(folder) == marker["files"]


def test_tiny_models_resolve_to_the_same_bytes_under_any_threads_and_kernels(tmp_path):
    """What every smoke number rests on: the same weights whatever the machine, thread count
    or kernel set (a local build gave two different model.safetensors for 1 and 2 threads)."""
    probe = "import json; from pathlib import Path; from resumo import models; print(json.dumps({m: models.file_digests(Path(models.resolve(m))) for m in models.TINY_MODELS}))"
    digests = []
    for env in ({"OMP_NUM_THREADS": "1"}, {"OMP_NUM_THREADS": "2"}, {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2"}):
        cache = tmp_path / f"cache-{len(digests)}"  # a fresh model cache each time
        result = subprocess.run(
            [sys.executable, "-c", probe], env={**os.environ, **env, "RESUMO_CACHE": str(cache)}, capture_output=True, text=True, check=True
        )
        digests.append(json.loads(result.stdout))
    assert digests[0] == digests[1] == digests[2]
    assert all(len(files) >= 4 and "config.json" in files for files in digests[0].values())


def test_the_builder_makes_a_loadable_model(tmp_path, monkeypatch):
    """`make tiny-models` stays runnable (here with a few pretraining steps, not the shipped 400)."""
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(models, "TINY_PRETRAIN_STEPS", 2)
    out = models.build_tiny_model("qwen2", tmp_path / "qwen2")
    assert models.file_digests(out) == json.loads((out / models.TINY_MARKER).read_text())["files"]
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 2

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from resumo import models


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

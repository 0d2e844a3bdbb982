"""A scrape killed with SIGKILL mid-way and rerun continues from its checkpoint: nothing lost, nothing repeated."""

import json
import signal
import subprocess
import sys

import pandas as pd

from resumo import scrape, tables
from resumo.config import load_config
from tests.servers.mediawiki import serve

RUN = "import json, sys; from resumo import scrape; from resumo.config import ScrapeConfig; scrape.run(ScrapeConfig.model_validate(json.loads(sys.argv[1])), sys.argv[2])"


def read_all(folder):
    return pd.concat([tables.read_split(folder, name).assign(split=name) for name in tables.SPLITS]).set_index("id").sort_index()


def test_killed_api_scrape_resumes_with_nothing_lost_or_repeated(tmp_path):
    with serve(hold_after=3) as server:
        sets = [
            "scrape.source=api", f"scrape.api.base_url={server.api_url}", "scrape.api.contact=resumo-tests@example.org",
            "scrape.api.batch_size=5", "scrape.api.list_limit=10", "scrape.api.concurrency=1", "scrape.checkpoint_every=5",
        ]
        cfg = load_config("smoke", sets).scrape
        out = tmp_path / "killed"
        child = subprocess.Popen([sys.executable, "-c", RUN, json.dumps(cfg.model_dump()), str(out)], stderr=subprocess.PIPE, text=True)
        try:
            # The child asks for batch 4 only after batch 3 is processed and checkpointed; the server holds it there.
            assert server.held.wait(180), child.stderr.read() if child.poll() is not None else "child never reached batch 4"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
        assert child.returncode == -signal.SIGKILL
        parts = sorted((out / "_checkpoint").rglob("part-*.json"))
        assert len(parts) == 3
        done = {i for p in parts for i in json.loads(p.read_text())["processed"]}
        assert len(done) == 15
        assert not (out / "train.parquet").exists()

        server.hold_after = None
        server.release.set()
        before = len(server.requests)
        resumed = scrape.run(cfg, out)
        after_kill = server.requests[before:]
        uninterrupted = scrape.run(cfg, tmp_path / "whole")

    # The listing resumed after the last checkpointed batch, and no page was fetched twice.
    assert after_kill[0]["list"] == "allpages" and "apcontinue" in after_kill[0]
    refetched = [int(i) for r in after_kill if r.get("pageids") for i in r["pageids"].split("|")]
    assert not set(refetched) & done and len(refetched) == len(set(refetched))
    assert resumed.counts == uninterrupted.counts and resumed.splits == uninterrupted.splits
    assert read_all(out).equals(read_all(tmp_path / "whole"))
    assert not (out / "_checkpoint").exists()


def test_a_truncated_bz2_keeps_what_was_collected(tmp_path):
    import bz2

    from resumo import wiki
    from resumo.errors import DataError

    raw = wiki.bundled_dump_path().read_bytes()
    data = b"".join(bz2.compress(raw[i : i + 20_000]) for i in range(0, len(raw), 20_000))  # multistream-like
    truncated = tmp_path / "dump.xml.bz2"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    cfg = load_config("smoke", [f"scrape.dump={truncated}", "scrape.checkpoint_every=10"]).scrape
    out = tmp_path / "out"
    try:
        scrape.run(cfg, out)
        raise AssertionError("a truncated dump must fail")
    except DataError as err:
        assert "malformed after" in str(err)
    parts = sorted((out / "_checkpoint").rglob("part-*.json"))
    markers = [json.loads(p.read_text()) for p in parts]
    collected = markers[-1]["counts"]["collected"]
    assert collected >= 20
    assert sum(m["rows"] for m in markers) == collected

    # The download is completed in place and the scrape rerun: it resumes and ends as a clean run does.
    truncated.write_bytes(data)
    resumed = scrape.run(cfg, out)
    clean = scrape.run(cfg.model_copy(update={"dump": str(wiki.bundled_dump_path())}), tmp_path / "clean")
    assert resumed.counts == clean.counts
    assert read_all(out).equals(read_all(tmp_path / "clean"))

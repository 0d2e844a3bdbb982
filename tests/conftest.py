import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Downloaded s3:// models are cached once per checkout and shared by every test and worker.
os.environ.setdefault("RESUMO_CACHE", str(ROOT / ".cache" / "resumo"))
# Nothing in the tests may reach a model hub: fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Two test workers on two cores: one thread each, or torch oversubscribes and slows to a crawl.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _gpu_run(config) -> bool:
    """`-m gpu` (`make test-gpu`), or only paths under tests/gpu: the run that is meant to use the GPU."""
    gpu_dir = ROOT / "tests" / "gpu"
    paths = [Path(str(a).split("::")[0]).resolve() for a in config.args]
    return (config.option.markexpr or "").strip() == "gpu" or (bool(paths) and all(p == gpu_dir or gpu_dir in p.parents for p in paths))


def pytest_configure(config):
    # The CPU suite stays on the CPU on a machine with a GPU. resumo trains in bf16 and generates on
    # `cuda` whenever torch.cuda.is_available(), and the suite's numbers (tests/NUMERICS.md) are argued
    # for CPU float32/float64 kernels. So, unless this is the GPU run (`make test-gpu`, tests/gpu), CUDA
    # is hidden before anything imports torch: pytest_configure runs before collection imports a test
    # module, no conftest imports torch, and xdist workers and the subprocesses tests start (torchrun,
    # `resumo train`) inherit the environment. tests/gpu's tests then skip, as on a machine without one.
    if not _gpu_run(config):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 HTTP endpoint on loopback (moto's server mode)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """Environment pointing boto3 at the loopback endpoint, and a fresh bucket."""
    import uuid

    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"resumo-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}"


@pytest.fixture(scope="session")
def smoke_config():
    from resumo.config import load_config

    return load_config("smoke")


@pytest.fixture(scope="session")
def articles_dir(tmp_path_factory, smoke_config):
    """The bundled corpus scraped once for the session."""
    from resumo import scrape

    out = tmp_path_factory.mktemp("articles")
    scrape.run(smoke_config.scrape, out)
    return out


@pytest.fixture(scope="session")
def pairs_dir(tmp_path_factory, smoke_config, articles_dir):
    from resumo import distill

    out = tmp_path_factory.mktemp("pairs")
    distill.run(smoke_config.distill, articles_dir, out)
    return out

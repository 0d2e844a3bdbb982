"""The Dockerfiles parse and install what they claim; `make images` pushes the names the pipeline uses."""

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

import resumo.components as components

ROOT = Path(__file__).resolve().parents[2]
FLAVOURS = ["cpu", "train", "vllm"]
# What each image must be able to import: the stages it runs.
CLAIMS = {"cpu": ["resumo.cli", "resumo.components"], "train": ["peft", "trl", "resumo.train"], "vllm": ["vllm", "resumo.distill"]}


def parsed(flavour):
    parser = DockerfileParser(fileobj=(ROOT / "images" / f"{flavour}.Dockerfile").open("rb"))
    return parser


def instructions(flavour, name):
    return [i["value"] for i in parsed(flavour).structure if i["instruction"] == name]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_base_is_pinned(flavour):
    (base,) = instructions(flavour, "FROM")  # one stage
    image, _, tag = base.partition("@")[0].partition(":")
    # An exact version (x.y.z) or a digest; never latest or a floating major.
    assert "@sha256:" in base or re.match(r"\d+\.\d+\.\d+", tag), base
    assert tag and "latest" not in tag


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_installs_resumo_from_the_repository_with_the_constraints(flavour):
    copies = " ".join(instructions(flavour, "COPY"))
    for source in ("pyproject.toml", "constraints.txt", "README.md", "src", "components", "pipelines"):
        assert re.search(rf"(^|\s){source}(\s|$)", copies), (flavour, source)
    runs = " ".join(instructions(flavour, "RUN"))
    assert re.search(r"pip install -c \S*constraints\S*\.txt \.( |$)", runs), runs
    for module in CLAIMS[flavour]:  # the build fails unless what the image is for imports
        assert re.search(rf"import [^\"]*\b{re.escape(module)}\b", runs), (flavour, module)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_runs_as_a_non_root_user_that_exists(flavour):
    users = instructions(flavour, "USER")
    assert users, flavour
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root")
    runs = " ".join(instructions(flavour, "RUN"))
    assert re.search(rf"useradd .*--uid {uid}\b", runs), runs
    # The install happens as root, before the switch: USER is the last word on who runs.
    order = [i["instruction"] for i in parsed(flavour).structure]
    assert order.index("USER") > max(n for n, i in enumerate(order) if i == "RUN")


def test_the_cpu_image_takes_the_cpu_build_of_torch():
    runs = " ".join(instructions("cpu", "RUN"))
    assert "download.pytorch.org/whl/cpu" in runs


def test_vllm_is_pinned():
    assert re.search(r"pip install vllm==\d+\.\d+\.\d+", " ".join(instructions("vllm", "RUN")))


def test_build_context_leaves_out_the_virtualenv_and_caches():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".cache", ".git", "runs"} <= set(ignored)


def test_make_images_builds_and_pushes_the_names_the_components_use(monkeypatch):
    out = subprocess.run(
        ["make", "-s", "images", "DOCKER=echo docker", "REGISTRY=registry.example.com/ml", "TAG=9.9.9"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.splitlines()
    monkeypatch.setenv("RESUMO_IMAGE_PREFIX", "registry.example.com/ml")
    monkeypatch.setenv("RESUMO_IMAGE_TAG", "9.9.9")
    import importlib

    images = importlib.reload(components).IMAGES
    try:
        assert set(images) == set(FLAVOURS)
        expected = []
        for flavour, image in images.items():
            expected += [f"docker build --file images/{flavour}.Dockerfile --tag {image} .", f"docker push {image}"]
        assert out == expected
        assert all(image.startswith("registry.example.com/ml/resumo-") and image.endswith(":9.9.9") for image in images.values())
    finally:
        monkeypatch.undo()
        importlib.reload(components)


def test_default_tag_is_the_package_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert components.VERSION == version

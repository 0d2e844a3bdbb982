"""The Dockerfiles install exactly their pinned requirements; `make images` pushes the names the pipeline uses.

`make images-test` builds the cpu image and runs the pipeline in it (images/test.sh); these run anywhere."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.version import Version

import resumo.components as components
import resumo.images as images_module

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "images"))
import requirements  # noqa: E402  images/requirements.py: what generates the pins
FLAVOURS = ["cpu", "train", "vllm"]
# What each image must be able to import: the stages it runs.
CLAIMS = {"cpu": ["resumo.cli", "resumo.components"], "train": ["peft", "trl", "resumo.train"], "vllm": ["vllm", "resumo.distill"]}


def parsed(flavour):
    parser = DockerfileParser(fileobj=(ROOT / "images" / f"{flavour}.Dockerfile").open("rb"))
    return parser


def instructions(flavour, name):
    return [i["value"] for i in parsed(flavour).structure if i["instruction"] == name]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_base_is_pinned_and_can_be_swapped(flavour):
    (base,) = instructions(flavour, "FROM")  # one stage
    assert base == "${BASE}"  # images-test builds on a local Debian base through this argument
    (default,) = [a.partition("=")[2] for a in instructions(flavour, "ARG") if a.startswith("BASE=")]
    image, _, tag = default.partition("@")[0].partition(":")
    # An exact version (x.y.z) or a digest; never latest or a floating major.
    assert "@sha256:" in default or re.match(r"\d+\.\d+\.\d+", tag), default
    assert tag and "latest" not in tag


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_installs_exactly_its_requirements_file_then_resumo_without_resolving(flavour):
    copies = instructions(flavour, "COPY")
    assert f"images/{flavour}.requirements.txt ./requirements.txt" in copies
    for source in ("pyproject.toml", "README.md", "src", "components", "pipelines"):
        assert re.search(rf"(^|\s){source}(\s|$)", " ".join(copies)), (flavour, source)
    runs = " ".join(instructions(flavour, "RUN"))
    commands = [c.strip() for run in instructions(flavour, "RUN") for c in run.split("&&")]
    installs = [c.removeprefix("pip install ") for c in commands if c.startswith("pip install")]
    assert installs and all("--no-deps" in i.split() for i in installs), installs  # nothing resolves at build time
    assert sorted(re.sub(r" --find-links \$\{TORCH_CPU\}", "", i).strip() for i in installs) == ["--no-deps -r requirements.txt", "--no-deps ."]
    assert "pip check" in runs  # the pinned set is consistent, as pip sees it
    for module in CLAIMS[flavour]:  # the build fails unless what the image is for imports
        assert re.search(rf"import [^\"]*\b{re.escape(module)}\b", runs), (flavour, module)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_requirements_pin_every_dependency_of_resumo_within_its_range(flavour):
    path = ROOT / "images" / f"{flavour}.requirements.txt"
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+!-]+", line) for line in lines), path
    assert "make image-requirements" in path.read_text()  # generated, not edited by hand
    pinned = requirements.pins(path)
    for dependency in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        wanted = Requirement(dependency)
        name = requirements.normalise(wanted.name)
        assert name in pinned and wanted.specifier.contains(pinned[name], prereleases=True), (flavour, dependency, pinned.get(name))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_requirements_keep_the_tested_pins_but_where_the_image_needs_others(flavour):
    tested, pinned = requirements.pins(ROOT / "constraints.txt"), requirements.pins(ROOT / "images" / f"{flavour}.requirements.txt")
    moved = {name for name in tested.keys() & pinned.keys() if tested[name] != pinned[name]}
    allowed = {name for name in moved if requirements.yields(flavour, name)} | ({"torch"} if flavour == "cpu" else set())
    assert moved == allowed, {name: (tested[name], pinned[name]) for name in moved - allowed}


def test_each_image_has_its_own_torch():
    tested = requirements.pins(ROOT / "constraints.txt")["torch"]
    torch = {f: requirements.pins(ROOT / "images" / f"{f}.requirements.txt")["torch"] for f in FLAVOURS}
    assert torch["cpu"] == f"{tested}+cpu"  # PyTorch's CPU build, not PyPI's CUDA one
    assert torch["train"] == tested and "nvidia-cublas" in requirements.pins(ROOT / "images" / "train.requirements.txt")
    vllm = requirements.pins(ROOT / "images" / "vllm.requirements.txt")
    assert f"vllm=={vllm['vllm']}" == requirements.VLLM and torch["vllm"] != tested  # vLLM's own torch
    assert not any(requirements.yields("cpu", n) or requirements.yields("train", n) for n in tested)


def test_vllm_yields_only_what_vllm_or_its_dependencies_pin():
    # numpy yields to mistral-common's numpy<2.4: that cap is why the old two-step install broke vLLM.
    vllm = requirements.pins(ROOT / "images" / "vllm.requirements.txt")
    assert "mistral-common" in vllm and Version(vllm["numpy"]) < Version("2.4")
    assert Version(vllm["transformers"]) < Version("5.21")


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
    (source,) = [a.partition("=")[2] for a in instructions("cpu", "ARG") if a.startswith("TORCH_CPU=")]
    assert source == requirements.TORCH_CPU_INDEX == "https://download.pytorch.org/whl/cpu/torch/"
    runs = " ".join(instructions("cpu", "RUN"))
    assert "--find-links ${TORCH_CPU} -r requirements.txt" in runs and "assert not torch.version.cuda" in runs


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

    importlib.reload(images_module)
    images = importlib.reload(components).IMAGES  # the re-export the components use
    try:
        assert set(images) == set(FLAVOURS)
        expected = []
        for flavour, image in images.items():
            expected += [f"docker build --file images/{flavour}.Dockerfile --tag {image} .", f"docker push {image}"]
        assert out == expected
        assert all(image.startswith("registry.example.com/ml/resumo-") and image.endswith(":9.9.9") for image in images.values())
    finally:
        monkeypatch.undo()
        importlib.reload(images_module)
        importlib.reload(components)


def test_default_tag_is_the_package_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert components.VERSION == version

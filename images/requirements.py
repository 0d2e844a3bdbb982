"""Pin each image's Python packages: images/<flavour>.requirements.txt, resolved by pip.

    make image-requirements                 # after a change to pyproject.toml or constraints.txt
    python images/requirements.py vllm      # one flavour

Each file is what pip's resolver chooses for resumo (pyproject.toml's ranges) under
constraints.txt (the tested pins) plus the image's own anchor: CPU torch for cpu, PyPI's
CUDA torch for train, vLLM for vllm. vLLM pins its own torch and transformers, and its
mistral-common caps numpy, so those pins of ours give way in the vllm image (`YIELDS`);
every other package stays at the tested version. The Dockerfiles install the file with
`pip install --no-deps`, so an image holds exactly this set and nothing resolves at build time.

pip runs without the machine's configuration (PIP_CONFIG_FILE=/dev/null): a local
find-links folder or a cap in /etc/xdg/pip must not leak into a file that production
builds read. The CPU build of torch comes from `--torch-cpu` (PyTorch's CPU index, or a
folder that holds the wheel).
"""

import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
VLLM = "vllm==0.33.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu/torch/"
# Our pins that give way to vLLM's: it requires torch==2.14.0 (and the CUDA wheels that
# torch pins) and transformers<5.21; mistral-common, which it requires, caps numpy<2.4.
YIELDS = {
    "cpu": [],
    "train": [],
    "vllm": ["torch", "torchvision", "torchaudio", "triton", "nvidia-*", "transformers", "numpy"],
}
FLAVOURS = list(YIELDS)
# Where the machine's pip may take packages from besides PyPI; a certificate or timeout setting stays.
LEAKS = {"PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"}


def pins(path):
    """{normalised name: version} of a file of `name==version` lines."""
    found = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            found[normalise(name)] = version.strip()
    return found


def normalise(name):
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def yields(flavour, name):
    return any(fnmatch.fnmatch(normalise(name), pattern) for pattern in YIELDS[flavour])


def anchors(flavour):
    torch = pins(CONSTRAINTS)["torch"]
    return {"cpu": [f"torch=={torch}+cpu"], "train": [f"torch=={torch}"], "vllm": [VLLM]}[flavour]


def resolve(flavour, torch_cpu=TORCH_CPU_INDEX):
    """What pip installs for resumo in the flavour's image: {name: version}, resumo left out."""
    kept = [line for line in CONSTRAINTS.read_text().splitlines() if not yields(flavour, line.partition("==")[0])]
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp, "constraints.txt")
        constraints.write_text("\n".join(kept) + "\n")
        return _dry_run(flavour, ["-c", str(constraints), *anchors(flavour)], torch_cpu)


def check(flavour, torch_cpu=TORCH_CPU_INDEX):
    """pip's resolver, given the file and resumo, installs exactly the file: nothing missing, nothing moved."""
    path = ROOT / "images" / f"{flavour}.requirements.txt"
    resolved = {normalise(name): version for name, version in _dry_run(flavour, ["-r", str(path)], torch_cpu).items()}
    if resolved != pins(path):
        wanted = pins(path)
        moved = {n: (wanted.get(n), resolved.get(n)) for n in wanted.keys() | resolved.keys() if wanted.get(n) != resolved.get(n)}
        raise SystemExit(f"{path.relative_to(ROOT)}: pip resolves a different set (file, resolved): {moved}")
    return resolved


def differing(flavour):
    """The file's pins that differ from constraints.txt and install here: what resumo's tests run under in images-test.

    torch's family is left out: PyPI's torch 2.14 is a CUDA build of several GB, and CPU torch 2.13 stands in."""
    tested = pins(CONSTRAINTS)
    cuda = ("torch", "torchvision", "torchaudio", "triton", "nvidia-*")
    return {n: v for n, v in pins(ROOT / "images" / f"{flavour}.requirements.txt").items()
            if n in tested and tested[n] != v and not any(fnmatch.fnmatch(n, c) for c in cuda)}


def _dry_run(flavour, requirements, torch_cpu):
    """pip install --dry-run of resumo and `requirements`, with nothing of this machine's pip configuration."""
    env = {k: v for k, v in os.environ.items() if k not in LEAKS} | {"PIP_CONFIG_FILE": os.devnull}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp, "report.json")
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report)]
        if flavour == "cpu":
            command += ["--find-links", torch_cpu]
        subprocess.run([*command, *requirements, str(ROOT)], env=env, check=True)
        installed = json.loads(report.read_text())["install"]
    return {m["name"]: m["version"] for m in (i["metadata"] for i in installed) if normalise(m["name"]) != "resumo"}


def render(flavour, resolved):
    yielded = ", ".join(YIELDS[flavour]) or "none"
    header = [
        f"# resumo-{flavour}: every package the image installs, with pip install --no-deps -r.",
        "# Generated by `make image-requirements` (images/requirements.py); do not edit.",
        f"# From: pyproject.toml, constraints.txt (pins that give way here: {yielded}), {' '.join(anchors(flavour))}.",
        "# Resolved for CPython 3.11 on linux x86_64, the images' platform.",
    ]
    return "\n".join(header + [f"{name}=={version}" for name, version in sorted(resolved.items(), key=lambda nv: normalise(nv[0]))]) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Checked below, not by `choices`: Python 3.11's argparse checks an empty nargs="*" list against choices and refuses it.
    parser.add_argument("flavours", nargs="*", help=f"the images to pin, of {', '.join(FLAVOURS)} (default: all)")
    parser.add_argument("--torch-cpu", default=TORCH_CPU_INDEX, help="find-links for torch's CPU build: an index page or a folder")
    parser.add_argument("--check", action="store_true", help="resolve each file with resumo and fail unless pip installs exactly it")
    parser.add_argument("--differing", action="store_true", help="print the pins that differ from constraints.txt (see differing)")
    args = parser.parse_args()
    if unknown := set(args.flavours) - set(FLAVOURS):
        parser.error(f"unknown image {', '.join(sorted(unknown))}; choose from {', '.join(FLAVOURS)}")
    for flavour in args.flavours or FLAVOURS:
        if args.differing:
            print(" ".join(f"{n}=={v}" for n, v in sorted(differing(flavour).items())))
            continue
        if args.check:
            print(f"images/{flavour}.requirements.txt: pip resolves exactly its {len(check(flavour, args.torch_cpu))} packages")
            continue
        path = ROOT / "images" / f"{flavour}.requirements.txt"
        path.write_text(render(flavour, resolve(flavour, args.torch_cpu)))
        print(f"{path.relative_to(ROOT)}: {len(pins(path))} packages")


if __name__ == "__main__":
    main()

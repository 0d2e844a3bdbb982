#!/usr/bin/env bash
# make images-test: build the cpu image here from its Dockerfile, run the compiled smoke
# pipeline's own container commands in it, and check that pip resolves each image's
# requirements file to exactly that file. What differs from a production build: README.md.
# Needs root (buildah's vfs storage, chroot); installs buildah and debootstrap where missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STORE=$PWD/.cache/images            # buildah's storage, the base and torch wheel, the runs
BASE=localhost/resumo-base:bookworm
CPU=localhost/resumo-cpu:test
export BUILDAH="buildah --storage-driver vfs --root $STORE/storage --runroot $STORE/runroot"
step() { echo "== $* ($(date -u +%T), ${SECONDS}s)"; }

command -v buildah >/dev/null && command -v debootstrap >/dev/null \
    || (apt-get update -qq && apt-get install -y -qq buildah debootstrap >/dev/null)

step "contract: each Dockerfile installs exactly its requirements file"
$PY -m pytest -q -n 0 -p no:cacheprovider tests/contract/test_images.py

step "base image $BASE: Debian bookworm from Debian's archive, for python:3.11.14-slim-bookworm"
$BUILDAH inspect "$BASE" >/dev/null 2>&1 || images/local-base.sh "$BASE"

# Here PIP_FIND_LINKS names the folder that holds it; elsewhere PIP_FIND_LINKS=https://download.pytorch.org/whl/cpu/torch/
step "torch's CPU build, from where this machine's pip finds it (PyTorch's index is out of reach)"
torch=$(sed -n 's/^torch==//p' images/cpu.requirements.txt)
$PY -m pip download --quiet --no-deps "torch==$torch" -d "$STORE/wheels"

step "build $CPU from images/cpu.Dockerfile"
started=$SECONDS
# This network's TLS proxy signs PyPI's certificate: its CA bundle is mounted for the RUN
# steps only (not committed), as the torch wheel is.
$BUILDAH bud --isolation chroot --file images/cpu.Dockerfile \
    --build-arg BASE="$BASE" --build-arg TORCH_CPU=/wheels \
    --volume "$STORE/wheels:/wheels:ro" \
    --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    --tag "$CPU" .
echo "built in $((SECONDS - started)) s; $($BUILDAH images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E 'resumo-(base|cpu)' | tr '\n' ' ')"

step "the compiled smoke pipeline, every task in $CPU with its executor's command and args"
run=$STORE/run
rm -rf "$run" && mkdir -p "$run/artifacts"
# The smoke profile's tiny models ship inside the package the image installed.
chown -R 1000:1000 "$run/artifacts"   # the image runs as uid 1000, as a pod with runAsNonRoot does
# One epoch, not ten: what is checked is that each task runs in the image, not what it learns.
RESUMO_IMAGE_PREFIX=localhost RESUMO_IMAGE_TAG=test .venv/bin/resumo compile --profile smoke \
    --set promote.registry="$run/artifacts/registry" --set cluster.retries=0 --set train.epochs=1 --output "$run/smoke.yaml"
# resumo-train's tasks (tune, train, score) run in the cpu image: same packages, CPU torch.
$PY images/run_in_image.py "$run/smoke.yaml" --root "$run/artifacts" \
    --use localhost/resumo-train:test="$CPU" --env HF_HUB_OFFLINE=1 --env RESUMO_CACHE="$run/artifacts/models"
$PY images/run_in_image.py --check "$run/artifacts"

step "pip resolves each requirements file, with resumo, to exactly that file (a clean venv)"
rm -rf "$STORE/venv" && python3.11 -m venv "$STORE/venv"
"$STORE/venv/bin/python" -m pip install --quiet --upgrade pip
"$STORE/venv/bin/python" images/requirements.py --check --torch-cpu "$STORE/wheels" cpu train vllm

step "resumo under vLLM's pins where they differ from constraints.txt (numpy, transformers)"
overlay=$STORE/vllm-pins
differing=$($PY images/requirements.py --differing vllm)
rm -rf "$overlay" && $PY -m pip install --quiet --no-deps --target "$overlay" $differing
export PYTHONPATH=$overlay   # ahead of .venv's site-packages: these versions are the ones imported
$PY -c 'import sys, importlib.metadata as m
for pin in sys.argv[1:]:
    name, version = pin.split("==")
    assert m.version(name) == version, (name, m.version(name), version)
    print(f"imported: {name} {version}")' $differing
$PY -m pytest -q -n 2 -p no:cacheprovider tests/unit/test_distill.py tests/unit/test_distill_components.py \
    tests/unit/test_generation.py tests/unit/test_models.py tests/unit/test_text.py tests/unit/test_lang.py tests/unit/test_metrics.py
unset PYTHONPATH

step "images-test passed"

"""The images every component runs in, named here and nowhere else.

`make images` builds and pushes exactly `IMAGES`, and `images/<flavour>.Dockerfile`
builds each. `RESUMO_IMAGE_PREFIX` and `RESUMO_IMAGE_TAG` (read when the pipeline
is compiled; `make images|compile REGISTRY=... TAG=...` sets them) point them at
your registry and release. The components (resumo.components re-exports these),
the pipeline and the launchers `resumo train|tune` run on a cluster read them here.
This file imports nothing but `os`, so the Makefile can read it without an install.
"""

import os

VERSION = "0.1.0"  # the package version (pyproject.toml); a test keeps the two equal
_PREFIX = os.environ.get("RESUMO_IMAGE_PREFIX") or "ghcr.io/resumo-ml"
_TAG = os.environ.get("RESUMO_IMAGE_TAG") or VERSION

CPU_IMAGE = f"{_PREFIX}/resumo-cpu:{_TAG}"  # scrape, score, promote, launchers
TRAIN_IMAGE = f"{_PREFIX}/resumo-train:{_TAG}"  # CUDA, torch, peft, trl
VLLM_IMAGE = f"{_PREFIX}/resumo-vllm:{_TAG}"  # the teacher

IMAGES = {"cpu": CPU_IMAGE, "train": TRAIN_IMAGE, "vllm": VLLM_IMAGE}  # flavour -> image; images/<flavour>.Dockerfile

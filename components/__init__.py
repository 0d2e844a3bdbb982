"""KFP components: each is a few lines that call one function in `resumo`.

Installed as `resumo.components`. The images every component runs in are set
here and nowhere else; `RESUMO_IMAGE_PREFIX` and `RESUMO_IMAGE_TAG` (read when
the pipeline is compiled) point them at your registry and release.
"""

import os

_PREFIX = os.environ.get("RESUMO_IMAGE_PREFIX", "ghcr.io/resumo-ml")
_TAG = os.environ.get("RESUMO_IMAGE_TAG", "0.1.0")

CPU_IMAGE = f"{_PREFIX}/resumo-cpu:{_TAG}"  # scrape, score, promote, launchers
TRAIN_IMAGE = f"{_PREFIX}/resumo-train:{_TAG}"  # CUDA, torch, peft, trl
VLLM_IMAGE = f"{_PREFIX}/resumo-vllm:{_TAG}"  # the teacher

# resumo-train: distill (transformers), tune, train and score on a GPU: CUDA, torch, peft, trl.
# torch's PyPI wheel brings the CUDA runtime, cuDNN and NCCL as nvidia-* wheels; the
# driver comes from the node (NVIDIA container toolkit), so a slim Python base suffices and
# keeps Python at 3.11, which resumo requires (CUDA's Ubuntu images ship 3.10 or 3.12).
ARG BASE=python:3.11.14-slim-bookworm
FROM ${BASE}

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    HF_HOME=/home/resumo/.cache/huggingface
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin resumo

WORKDIR /opt/resumo
# Exactly the pinned set (make image-requirements), torch's CUDA wheels included.
COPY images/train.requirements.txt ./requirements.txt
RUN pip install --no-deps -r requirements.txt
COPY pyproject.toml README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
RUN pip install --no-deps . \
 && pip check \
 && python -c "import peft, trl, resumo.train, resumo.components"

USER 1000:1000
WORKDIR /home/resumo

# resumo-vllm: the teacher (distill with teacher.backend=vllm), score with score.engine=vllm, and the server in the
# example InferenceService (manifests/inferenceservice.yaml).
# vLLM pins its own torch and transformers and caps numpy (through mistral-common): the
# requirements file takes those from vLLM, every other package at the tested version
# (images/requirements.py, YIELDS).
ARG BASE=python:3.11.14-slim-bookworm
FROM ${BASE}

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    HF_HOME=/home/resumo/.cache/huggingface
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin resumo

WORKDIR /opt/resumo
# Exactly the pinned set (make image-requirements): vLLM and resumo resolved together.
COPY images/vllm.requirements.txt ./requirements.txt
RUN pip install --no-deps -r requirements.txt
COPY pyproject.toml README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
RUN pip install --no-deps . \
 && pip check \
 && python -c "import vllm, resumo.distill, resumo.score, resumo.components"

USER 1000:1000
WORKDIR /home/resumo

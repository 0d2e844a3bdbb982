# resumo-vllm: the teacher (distill with teacher.backend=vllm), and the server in the
# example InferenceService (manifests/inferenceservice.yaml).
# vLLM pins its own torch and transformers, so those pins are dropped from our
# constraints here; every other dependency stays at the tested version.
FROM python:3.11.14-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    HF_HOME=/home/resumo/.cache/huggingface
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin resumo

WORKDIR /opt/resumo
COPY constraints.txt pyproject.toml README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
RUN grep -v -E '^(torch|torchvision|torchaudio|transformers|tokenizers|triton|nvidia-[a-z0-9-]+)==' constraints.txt > /tmp/constraints-vllm.txt \
 && pip install vllm==0.33.0 \
 && pip install -c /tmp/constraints-vllm.txt . \
 && python -c "import vllm, resumo.distill, resumo.components"

USER 1000:1000
WORKDIR /home/resumo

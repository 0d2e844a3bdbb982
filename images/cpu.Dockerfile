# resumo-cpu: scrape, promote and the launchers (Katib), on CPU.
#   make images                      # builds all three with one tag (see the Makefile)
# Context: the repository root (.dockerignore keeps .venv, caches and runs out).
FROM python:3.11.14-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    HF_HOME=/home/resumo/.cache/huggingface
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin resumo

WORKDIR /opt/resumo
COPY constraints.txt pyproject.toml README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
# torch's CPU build first (2.13.0+cpu outranks the CUDA wheel of PyPI, at a fraction of its
# size), then resumo at the tested pins.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -c constraints.txt torch \
 && pip install -c constraints.txt . \
 && python -c "import resumo.cli, resumo.components, resumo.pipelines"

USER 1000:1000
WORKDIR /home/resumo

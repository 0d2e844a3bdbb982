# resumo-cpu: scrape, score, promote and the launchers (Katib), on CPU.
#   make images                      # builds all three with one tag (see the Makefile)
#   make images-test                 # builds this one here and runs components in it (README.md)
# Context: the repository root (.dockerignore keeps .venv, caches and runs out).
ARG BASE=python:3.11.14-slim-bookworm
FROM ${BASE}
# Where torch's CPU build comes from (pip --find-links): PyTorch's CPU index, or a folder
# with the wheel, bind-mounted into the build where the index is out of reach.
ARG TORCH_CPU=https://download.pytorch.org/whl/cpu/torch/

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    HF_HOME=/home/resumo/.cache/huggingface
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin resumo

WORKDIR /opt/resumo
# Exactly the pinned set (make image-requirements), in a layer of its own: a change to
# resumo's code reinstalls resumo, not torch.
COPY images/cpu.requirements.txt ./requirements.txt
RUN pip install --no-deps --find-links ${TORCH_CPU} -r requirements.txt
COPY pyproject.toml README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
RUN pip install --no-deps . \
 && pip check \
 && python -c "import resumo.cli, resumo.components, resumo.pipelines, torch; assert not torch.version.cuda"

USER 1000:1000
WORKDIR /home/resumo

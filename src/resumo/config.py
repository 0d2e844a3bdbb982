"""Configuration: one pydantic model per stage, composed into `PipelineConfig`.

Resolution order (as in trl's `parse_args_and_config`): field defaults, which are
the original study's values, then a profile YAML (`smoke`, `full` or a path),
then `--set section.field=value` overrides. Everything is validated before any
work starts, and a bad value names its field, the value and what is allowed.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from resumo.errors import ConfigError

PROFILES = ("smoke", "full", "cpu-real")

# Qwen2.5-0.5B ties lm_head to embed_tokens; LoRA on either would unite them (DESIGN.md).
TIED_MODULES = {"lm_head", "embed_tokens"}


class Section(BaseModel):
    # extra="forbid" makes a typo (`train.lora.rank`) an error instead of a silent default.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --- scrape -----------------------------------------------------------------


class SplitConfig(Section):
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of articles in the validation split (original study: 1,000 of 5,000).")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of articles in the test split (original study: 1,000 of 5,000).")
    seed: int = Field(42, description="Seed of the split and of the token budgets; the same seed gives the same split.")

    @model_validator(mode="after")
    def _leave_room_for_train(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:g} leaves no training articles; keep the sum below 1"
            )
        return self


class ApiConfig(Section):
    """The MediaWiki Action API source (scrape.source = api)."""

    base_url: str = Field("https://pt.wikipedia.org/w/api.php", description="Action API endpoint; article URLs derive from it (…/w/api.php -> …/wiki/Title).")
    pages: Literal["titles", "category", "random", "all"] = Field(
        "all",
        description="Which pages: `titles` (scrape.api.titles), `category` (the tree under scrape.api.category), `random` (needs scrape.max_articles), `all` (every article, by title).",
    )
    titles: list[str] = Field(default_factory=list, description="Page titles to fetch when pages = titles.")
    category: str | None = Field(None, description="Root category when pages = category, with or without the `Categoria:` prefix.")
    category_depth: int = Field(2, ge=0, description="How many levels of subcategories under scrape.api.category are followed (0: the root's pages only).")
    batch_size: int = Field(50, ge=1, le=50, description="Titles per content request; 50 is the API's limit for ordinary clients.")
    list_limit: int = Field(500, ge=1, le=500, description="Titles per listing request (allpages, categorymembers, random); 500 is the API's limit for ordinary clients.")
    concurrency: int = Field(2, ge=1, le=8, description="Content requests in flight at once. Wikimedia asks bots to keep this small.")
    contact: str | None = Field(
        None,
        description="Contact (an e-mail or a URL) put in the User-Agent, as Wikimedia's policy requires; None reads $RESUMO_WIKI_CONTACT. Never commit personal data: set the variable.",
    )
    maxlag: int = Field(5, ge=0, description="Seconds of database lag above which the API refuses us and we wait (https://www.mediawiki.org/wiki/Manual:Maxlag_parameter).")
    max_retries: int = Field(6, ge=0, description="Retries of one request on 429, 5xx, maxlag errors, connection errors and unreadable JSON.")
    backoff_s: float = Field(1.0, ge=0, description="Seconds of the first retry delay; it doubles each retry, with jitter. A larger Retry-After header wins.")
    max_wait_s: float = Field(120.0, ge=0, description="Cap on any single retry wait in seconds, Retry-After included.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout in seconds.")


class PageviewsConfig(Section):
    """Page-view weighting from the Wikimedia pageviews REST API (optional, as in the original study)."""

    enabled: bool = Field(False, description="Fetch each kept article's views (one request per article) and sample by views x words.")
    base_url: str = Field("https://wikimedia.org/api/rest_v1", description="REST API root; requests go to …/metrics/pageviews/per-article/{project}/all-access/user/{title}/monthly/{start}/{end}.")
    project: str = Field("pt.wikipedia", description="Wikimedia project of the articles.")
    start: str = Field("20230101", pattern=r"^\d{8}$", description="First day counted, YYYYMMDD (original study: 2023-01).")
    end: str = Field("20240229", pattern=r"^\d{8}$", description="Last day counted, YYYYMMDD (original study: 2024-02).")


DEFAULT_TOPIC_KEYWORDS: dict[str, list[str]] = {
    # Word starts matched in an article's category names; the topic with most matches wins.
    "politics_business": ["polític", "governo", "parlament", "eleiç", "partido", "economi", "macroeconomi", "empresa", "mercado", "comércio", "finan", "banco", "tribut", "monetári", "organizaç", "sociedades comerciais", "órgãos de soberania"],
    "sport": ["desport", "futebol", "atletismo", "atletas", "olímpic", "clube", "maratona", "fórmula 1", "voleibol", "basquetebol", "ténis", "tênis", "ciclismo", "volta a", "jogos olímpicos", "campeonato"],
    "science_technology": ["ciência", "físic", "químic", "biologi", "medicina", "médicos", "tecnologi", "computa", "internet", "redes de", "astronomi", "sistema solar", "telescóp", "nasa", "matemátic", "vacina", "saúde", "metabolismo", "engenharia", "software", "tabela periódica", "teoria da"],
    "culture_art": ["música", "musica", "pintor", "pintura", "arte", "artístic", "literatura", "poet", "poema", "livros", "cinema", "filme", "escritor", "samba", "modernismo", "teatro", "patrimônio cultural", "património cultural", "academia brasileira de letras"],
    "geography_history": ["históri", "rios", "rio ", "serra", "montanha", "países", "cidades", "municípios", "vilas", "geografi", "sismos", "roma antiga", "império", "guerra", "revoluç", "dinastia", "zonas úmidas", "ilhas", "pantanal"],
}


class SelectionConfig(Section):
    """What is kept from the collected pool, as in the original study."""

    topics: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_TOPIC_KEYWORDS.items()},
        description="Topic -> word starts matched in category names (the five topics of the original study). Articles matching none get topic None.",
    )
    topic_classifier: str | None = Field(
        None,
        description="Zero-shot (NLI) classifier that picks each article's topic from its first paragraph, as the original study did: a hub id (e.g. MoritzLaurer/mDeBERTa-v3-base-mnli-xnli), path or s3:// prefix. None maps category names with `topics`, which needs no model.",
    )
    per_topic: int | None = Field(
        None,
        ge=1,
        description="Articles sampled per topic with probability proportional to views x words (original study: 1,000; set in the full profile); None keeps every article, topic or not.",
    )
    near_duplicate_threshold: float | None = Field(
        0.8, gt=0, le=1, description="Estimated Jaccard similarity of word 5-gram sets (MinHash LSH) above which the later article is dropped; None keeps near-duplicates."
    )


class ScrapeConfig(Section):
    source: Literal["dump", "api", "parquet"] = Field(
        "dump",
        description="Where articles come from: `dump` (a MediaWiki XML export, scrape.dump), `api` (the MediaWiki Action API, scrape.api), `parquet` (an HF wikimedia/wikipedia snapshot, scrape.parquet).",
    )
    dump: str = Field("bundled", description="Path or URI (file://, s3://) of the XML dump (pages-articles*.xml or .bz2, multistream too); `bundled` is the Portuguese sample corpus shipped with resumo.")
    parquet: str | None = Field(None, description="Path or s3:// URI of a Parquet file, or a folder of them, with columns id, url, title, text (the HF wikimedia/wikipedia layout, e.g. 20231101.pt, the original study's snapshot).")
    api: ApiConfig = Field(default_factory=ApiConfig)
    pageviews: PageviewsConfig = Field(default_factory=PageviewsConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    min_words: int = Field(150, ge=0, description="Articles with fewer words of clean text are skipped and counted as `too_short`.")
    max_articles: int | None = Field(None, ge=1, description="Stop after this many kept articles; None keeps all.")
    tokenizer: str = Field(
        "Qwen/Qwen2.5-0.5B-Instruct",
        description="Tokenizer that counts `n_tokens` and cuts texts to the token budget, so budgets are in student tokens; unset in a profile, it follows train.student.",
    )
    min_tokens: int = Field(500, ge=1, description="Lower end of each article's token budget, drawn uniformly per article (original study: 500).")
    max_tokens: int = Field(4000, ge=1, description="Upper end of the token budget (original study: 4,000). Texts are cut to whole paragraphs under it.")
    checkpoint_every: int = Field(500, ge=1, description="Pages processed between checkpoints in the output folder; a killed scrape rerun with the same --out resumes from the last one.")
    checkpoint_store: str | None = Field(
        None,
        description="Prefix (s3://... or a path) where a run's scrape checkpoint is kept instead, under <prefix>/<run id>/scrape/, so a retried pod resumes; used only with a run id (the pipeline's, or --run-id), deleted after success. Unset in a profile: <storage_root>/checkpoints.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=256,
        description="Processes that clean, filter and cut pages: parsing wikitext is pure Python, one core each. The pipeline's scrape task requests this many CPUs.",
    )
    split: SplitConfig = Field(default_factory=SplitConfig)
    cache: str | None = Field(
        None,
        description="URI prefix (s3://bucket/prefix or a path) of the cleaned-article cache (resumo.scrape_cache): pages already cleaned at the same revision, with the same cleaning "
        "settings, are not cleaned again, and an article keeps its split from run to run. Unset in a profile: <storage_root>/cache/articles. None or \"\": no cache, every run cleans and splits afresh.",
    )

    @model_validator(mode="after")
    def _budget_is_a_range(self) -> ScrapeConfig:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) is above max_tokens ({self.max_tokens}); make min_tokens <= max_tokens")
        return self

    @model_validator(mode="after")
    def _source_is_complete(self) -> ScrapeConfig:
        if self.source == "parquet" and not self.parquet:
            raise ValueError("source = parquet needs scrape.parquet: a Parquet file or folder (path or s3://)")
        if self.source == "api":
            if self.api.pages == "titles" and not self.api.titles:
                raise ValueError("api.pages = titles needs scrape.api.titles, a list of page titles")
            if self.api.pages == "category" and not self.api.category:
                raise ValueError("api.pages = category needs scrape.api.category, e.g. Categoria:Futebol")
            if self.api.pages == "random" and not self.max_articles:
                raise ValueError("api.pages = random never ends by itself; set scrape.max_articles")
        return self


# --- distill ----------------------------------------------------------------


class PromptConfig(Section):
    version: Literal["pt-v1"] = Field("pt-v1", description="Prompt template version; part of the teacher cache key, so a new wording is a new version.")
    n_words: int = Field(100, ge=10, le=1000, description="Most words the summary may have, said in the prompt (original study: 100).")


class TeacherConfig(Section):
    backend: Literal["vllm", "openai", "transformers", "extractive"] = Field(
        "vllm",
        description="`vllm`: offline batched generation (GPU image); `openai`: any OpenAI-compatible /v1/chat/completions endpoint (a vLLM server, KServe), set `base_url`; `transformers`: batched generate on CPU or GPU; `extractive`: lead sentences, a deterministic baseline.",
    )
    model: str = Field("meta-llama/Llama-3.1-8B-Instruct", description="Hub id, path or s3:// prefix of the teacher (original study: Llama-3.1-8B-Instruct); for `openai`, the model name the endpoint serves. Ignored by `extractive`.")
    max_new_tokens: int = Field(500, ge=1, description="Generation limit per summary (original study: 500). Greedy decoding, as in the study.")
    batch_size: int = Field(8, ge=1, description="Articles per generate call for `transformers`; vLLM schedules its own batches.")
    base_url: str | None = Field(None, description="`openai` only: the endpoint's base URL, e.g. http://teacher.kubeflow.svc:8000/v1. Required by `openai`.")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="`openai` only: name of the environment variable (on a cluster, from a Secret) that holds the API key; None for an endpoint without authentication. The key itself never goes in config.")
    concurrency: int = Field(16, ge=1, le=1024, description="`openai` only: requests in flight at once; match the server's batch capacity (vLLM's default max_num_seqs is 256).")
    timeout_s: float = Field(300.0, gt=0, description="`openai` only: seconds one request may take before it is retried; 500 greedy tokens from an 8B model on a busy server can take minutes.")
    max_retries: int = Field(3, ge=0, description="`openai` only: retries of a request after a timeout, a connection error, 429 or 5xx, with exponential backoff (the openai client's).")
    max_consecutive_failures: int = Field(32, ge=1, description="`openai` only: this many failed requests in a row mean the endpoint is down: the stage stops, keeping every summary already cached.")
    # vllm only: how the engine is sized (resumo.vllm_engine). A 70B teacher needs several GPUs; an 8B one at its
    # default 128K context asks for more KV cache than a 24 GB GPU holds, so the context is cut to what distill needs.
    tensor_parallel_size: int | None = Field(
        None, ge=1, le=64, description="`vllm` only: GPUs one engine shards the teacher over (a 70B teacher in bf16: 4-8 x 80 GB); None: every visible GPU. The pipeline's vllm shard requests this many GPUs, else s9_gpu_count."
    )
    max_model_len: int | None = Field(
        None, ge=16, description="`vllm` only: context length in tokens the KV cache is sized for; None: derived, the prompt's own tokens + max_input_tokens x 1.25 (another tokenizer than the student's) + max_new_tokens."
    )
    max_input_tokens: int | None = Field(
        None, ge=1, description="`vllm` only: longest article in student tokens, for the derived max_model_len; unset in a profile, it follows scrape.max_tokens (the token budget). None and no max_model_len: the model's own context length."
    )
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="`vllm` only: share of each GPU's memory vLLM may take for weights and KV cache (vLLM's default 0.9).")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", description="`vllm` only: weights and activations; `auto` is the checkpoint's dtype (bf16 for Llama-3.1).")

    @model_validator(mode="after")
    def _openai_needs_an_endpoint(self) -> TeacherConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend `openai` needs base_url, e.g. distill.teacher.base_url=http://teacher:8000/v1")
        return self


class DistillConfig(Section):
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    min_words: int = Field(20, ge=1, description="Summaries with fewer words are kept but marked `too_short` in `filter_reason`.")
    max_words_ratio: float = Field(2.0, ge=1, description="Summaries longer than n_words x this are marked `too_long` (the study judged over 200 words bad).")
    cache: str | None = Field(
        None,
        description="URI prefix (s3://bucket/prefix or a path) of the teacher-output cache, keyed by article revision and text, teacher, prompt and generation settings; a rerun asks the teacher only for what is not there. "
        "Unset in a profile: <storage_root>/cache/teacher. None or \"\": no cache.",
    )
    checkpoint_every: int = Field(256, ge=1, description="Articles per teacher call between cache writes: a crashed run loses at most this many summaries.")
    shards: int = Field(1, ge=1, le=256, description="Pipeline only: distil in this many parallel tasks (each on its own GPU), split by a hash of the article id, then merged.")


# --- train ------------------------------------------------------------------


class LoraSettings(Section):
    r: int = Field(64, ge=1, le=1024, description="LoRA rank (original study: grid over 8, 16, 32, 64; 64 won).")
    alpha_ratio: float = Field(2.0, gt=0, description="lora_alpha = alpha_ratio x r (original study: alpha = 2r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout (original study: 0.05).")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
        description="Modules that get adapters: every attention and MLP projection. Never the tied embeddings.",
    )

    @field_validator("target_modules")
    @classmethod
    def _not_tied_embeddings(cls, modules: list[str]) -> list[str]:
        tied = sorted(TIED_MODULES.intersection(modules))
        if tied:
            raise ValueError(f"{tied} are tied to each other in Qwen2.5-0.5B; remove them and target the projections only")
        return modules

    @property
    def alpha(self) -> float:
        return self.alpha_ratio * self.r


class TrainJobSettings(Section):
    """train.backend = trainjob: the train task launches a Kubeflow Trainer TrainJob (resumo.trainjob)."""

    namespace: str | None = Field(None, description="Namespace of the TrainJob; None: the launcher pod's own namespace (its service account's), else `default`.")
    name_prefix: str = Field(
        "resumo-train", pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", max_length=40, description="TrainJob name = prefix + '-' + 12 hex characters of the KFP run id (so a retried task finds its TrainJob)."
    )
    runtime: str = Field("torch-distributed", min_length=1, description="ClusterTrainingRuntime the TrainJob runs on; Kubeflow Trainer's `torch-distributed` sets torchrun up (mlPolicy.torch).")
    num_nodes: int = Field(1, ge=1, le=256, description="Nodes (pods) of the TrainJob, each with cluster.gpu's (s9_gpu_*) accelerators, one torchrun process per GPU; the global batch stays train.batch_size x train.gradient_accumulation.")
    output: str = Field(
        "s3://resumo/train",
        pattern=r"^s3://[^/]+",
        description="S3 prefix the TrainJob's rank 0 writes to: <output>/<TrainJob name>/adapter, /metrics.json, /curves.png. Unset in a profile: <storage_root>/train where storage_root is s3://.",
    )
    image: str | None = Field(None, description="Image of the TrainJob's nodes; None: the train image the pipeline was compiled with, or `resumo train` runs with (resumo.images).")
    timeout_s: int = Field(48 * 3600, ge=1, description="Longest the launcher waits for the TrainJob, and its activeDeadlineSeconds: the cluster stops it then too.")
    poll_s: float = Field(30.0, ge=0, description="Seconds between status reads while waiting.")
    delete: bool = Field(False, description="Delete the TrainJob (and its pods) once its adapter is handed on, or when it failed or timed out; kept, its logs stay readable. Its outputs on S3 stay.")


class TrainConfig(Section):
    backend: Literal["pod", "trainjob"] = Field(
        "pod",
        description="`pod`: the train task trains in its own pod, on its GPUs (one process per GPU). `trainjob`: the train task is a CPU launcher that runs training as a Kubeflow Trainer TrainJob over "
        "train.trainjob.num_nodes nodes (resumo.trainjob); a compile-time choice.",
    )
    trainjob: TrainJobSettings = Field(default_factory=TrainJobSettings)
    student: str = Field("Qwen/Qwen2.5-0.5B-Instruct", description="Hub id, path or s3:// prefix of the model to tune; `tiny:qwen2` is the bundled tiny random model.")
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    learning_rate: float = Field(2e-5, gt=0, lt=1, description="Peak learning rate (original study: 2e-5).")
    lr_scheduler: Literal["linear", "cosine", "constant_with_warmup"] = Field("linear", description="Schedule after warm-up (original study: linear).")
    warmup_steps: int = Field(5, ge=0, description="Optimizer steps of linear warm-up (original study: 5).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (original study: 0.01).")
    epochs: float = Field(4, gt=0, description="Passes over the training split (original study: 4).")
    batch_size: int = Field(16, ge=1, description="Examples per device step (original study: 16).")
    gradient_accumulation: int = Field(
        4,
        ge=1,
        description="Steps accumulated per optimizer step; the global batch = batch_size x this (original study: 4, so 64), whatever the number of processes: "
        "with N processes (nproc_per_node, or a TrainJob's nodes) each accumulates fewer steps, or smaller micro-batches, and N must divide the global batch (resumo.launch).",
    )
    nproc_per_node: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Training processes on this machine, one per GPU, started by torchrun (DDP); None: one per visible CUDA GPU, else 1. "
        "On CPU, N > 1 runs N gloo processes (tests). `resumo train --nproc-per-node` sets it.",
    )
    max_length: int = Field(6000, ge=16, description="Longest prompt + summary in tokens; longer examples are truncated from the right (original study: 6,000).")
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description="Recompute activations in the backward pass instead of keeping them (about a third more time). `auto`: on only where a micro-batch's activations would not fit "
        "the GPU's memory (resumo.batching.needs_checkpointing). Applies on GPU only.",
    )
    batching: Literal["length_grouped", "padding_free", "padded"] = Field(
        "padding_free",
        description="`padding_free`: a micro-batch is one row of its examples end to end, position ids restarting at 0 in each, no padding and no attention across examples "
        "(resumo.batching); needs an attention that keeps examples apart without a mask over the row: `varlen` (or `flash_attention_2`); on a GPU, `sdpa`/`eager` are refused. "
        "`length_grouped`: padded batches of similar lengths. `padded`: trl's plain padded batches in random order.",
    )
    micro_batch_tokens: int = Field(
        16384,
        ge=0,
        description="Cut each optimizer step's batch_size x gradient_accumulation examples into micro-batches of at most this many tokens (padding-free: their sum; padded: "
        "longest x count), instead of gradient_accumulation micro-batches of batch_size examples; the global batch is the same. At least max_length. 0: by count.",
    )
    attn_implementation: Literal["varlen", "sdpa", "eager", "flash_attention_2"] = Field(
        "varlen",
        description="Attention kernel. `varlen` (resumo.attention) attends within each example of a padding-free row: on a GPU through PyTorch's own flash-attention varlen "
        "kernel (torch >= 2.10, no extra package), elsewhere sdpa per example; batches that are not padding-free rows use sdpa. `flash_attention_2` does the same through "
        "the flash-attn package, which must be installed. `sdpa` and `eager` attend through a mask over the whole row.",
    )
    liger_kernel: bool = Field(
        False,
        description="On a GPU: Liger's fused Triton kernels for RMSNorm, SwiGLU and RoPE (liger-kernel, in the train image). Off by default: at the study's shapes on an H200 a "
        "training step is bound by launching kernels, not by memory or arithmetic, and Liger's Triton launches made it slower (tests/bench/README.md). Ignored on CPU.",
    )
    compile: bool = Field(
        False,
        description="torch.compile each decoder layer in place (PyTorch's regional compilation: the layers share one graph, so it compiles once; the token count, "
        "which every micro-batch has its own of, turns dynamic at the second). Fuses the elementwise kernels (norms, rotary, LoRA's casts and scaling) whose launches bound a step on a GPU "
        "(docs/gpu.md). Needs a C++ compiler on CPU and Triton on a GPU; off until measured faster on one.",
    )
    bf16: bool = Field(True, description="Train and evaluate in bfloat16 on a GPU that supports it; float32 on CPU regardless.")
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every this many optimizer steps; None checkpoints at the end of each epoch. A killed run resumes from the last complete checkpoint.")
    checkpoint_store: str | None = Field(
        None,
        description="Prefix (s3://... or a path) where a run's checkpoints are also kept, under <prefix>/<run id>/train/, so a retried pod on an empty disk resumes; used only with a run id (the pipeline's, or --run-id), deleted after success. Unset in a profile: <storage_root>/checkpoints.",
    )
    merge: bool = Field(False, description="Also write `merged/`: the base model with the adapter folded in (peft merge_and_unload), for servers that cannot load adapters.")
    eval_samples: int | None = Field(None, ge=1, description="Validation articles summarised to compute ROUGE-Lsum at the end of each epoch; None uses all (slow for 1,000 articles: cap it).")
    max_new_tokens: int = Field(256, ge=1, description="Generation limit when summarising validation articles.")
    seed: int = Field(42, description="Seed of adapter initialisation and data order.")

    @model_validator(mode="after")
    def _budget_holds_the_longest_example(self) -> TrainConfig:
        if self.micro_batch_tokens and self.micro_batch_tokens < self.max_length:
            raise ValueError(
                f"micro_batch_tokens={self.micro_batch_tokens} is below max_length={self.max_length}: the longest example would not fit a micro-batch; "
                f"raise micro_batch_tokens to at least {self.max_length}, or set it to 0 to cut micro-batches by count"
            )
        return self

    def with_params(self, params: dict[str, Any]) -> TrainConfig:
        """A copy with dotted train.* overrides (a trial's, tune's best), validated like any config."""
        values = self.model_dump()
        for key, value in params.items():
            set_dotted(values, key, value)
        return validate(TrainConfig, values)


# --- tune -------------------------------------------------------------------


class ParamRange(Section):
    """One hyperparameter's candidates: a list of `values`, or a `low`..`high` range."""

    values: list[int | float] | None = Field(None, min_length=1, description="The values to try (Katib `discrete`, optuna categorical); `grid` needs this form. None: use low..high.")
    low: float | None = Field(None, description="Lower end of the range (inclusive); only without `values`.")
    high: float | None = Field(None, description="Upper end of the range (inclusive); only without `values`.")
    log: bool = Field(False, description="Draw from low..high log-uniformly (Katib `logUniform`): right for learning rates, which matter by order of magnitude.")

    @model_validator(mode="after")
    def _values_or_a_range(self) -> ParamRange:
        if self.values is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either values or low/high, not both (to switch a profile's values to a range, also set values=null)")
            if len(set(self.values)) != len(self.values):
                raise ValueError(f"values {self.values} repeat; list each value once")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a range needs low < high (got low={self.low}, high={self.high}); or give values: [...]")
        elif self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        return self

    def bounds(self) -> list[float]:
        """The values, or the two ends of the range: each must be a valid train value."""
        return list(self.values) if self.values is not None else [self.low, self.high]


class SearchSpace(Section):
    """The hyperparameters tune may vary, each mapped to the train.* field it sets."""

    # The train.* field each entry sets; its type and bounds check the candidates.
    TRAIN_KEYS: ClassVar[dict[str, str]] = {
        "lora_r": "lora.r",
        "lora_alpha_ratio": "lora.alpha_ratio",
        "learning_rate": "learning_rate",
        "lora_dropout": "lora.dropout",
        "epochs": "epochs",
    }

    lora_r: ParamRange = Field(default_factory=lambda: ParamRange(values=[8, 16, 32, 64]), description="LoRA rank (original study: grid over 8, 16, 32, 64).")
    lora_alpha_ratio: ParamRange = Field(default_factory=lambda: ParamRange(values=[1, 2, 4]), description="lora_alpha / r (original study: 2).")
    learning_rate: ParamRange = Field(default_factory=lambda: ParamRange(low=1e-5, high=3e-4, log=True), description="Peak learning rate, log-uniform (original study: 2e-5).")
    lora_dropout: ParamRange = Field(default_factory=lambda: ParamRange(low=0.0, high=0.1), description="LoRA dropout (original study: 0.05).")
    epochs: ParamRange = Field(default_factory=lambda: ParamRange(values=[2, 3, 4]), description="Passes over the training split (original study: 4).")

    @model_validator(mode="before")
    @classmethod
    def _complete_from_defaults(cls, data: Any) -> Any:
        """`--set tune.space.learning_rate.high=1e-3` keeps the default low and log: an entry given
        in the same form as its default (values, or low/high) is merged into the default."""
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, given in data.items():
            if name in cls.TRAIN_KEYS and isinstance(given, dict):
                default = cls.model_fields[name].get_default(call_default_factory=True).model_dump(exclude_none=True)
                if _range_form(given) in (None, _range_form(default)):
                    merged[name] = {**default, **given}
        return merged

    @model_validator(mode="after")
    def _candidates_are_valid_train_values(self) -> SearchSpace:
        for name in self.TRAIN_KEYS:
            for value in getattr(self, name).bounds():
                try:
                    train_value(name, value)
                except ValidationError as err:
                    raise ValueError(f"{name}: {value!r} is not a valid train.{self.TRAIN_KEYS[name]} ({err.errors()[0]['msg']})") from None
        return self

    def grid_size(self, search: list[str]) -> int:
        """Points of the grid over the entries `search` names (each a list of values)."""
        return math.prod(len(getattr(self, name).values) for name in search)

    def trial_count(self, search: list[str], algorithm: str, max_trials: int) -> int:
        """Trials either tune backend runs: `max_trials`, or every point of a smaller grid."""
        return min(max_trials, self.grid_size(search)) if algorithm == "grid" else max_trials


def _range_form(entry: dict) -> str | None:
    if entry.get("values") is not None:
        return "values"
    return "range" if entry.get("low") is not None or entry.get("high") is not None else None


def train_field(name: str):
    """The pydantic FieldInfo of the train.* field that search-space entry `name` sets."""
    model: type[BaseModel] = TrainConfig
    *parents, leaf = SearchSpace.TRAIN_KEYS[name].split(".")
    for part in parents:
        model = model.model_fields[part].annotation
    return model.model_fields[leaf]


def train_value(name: str, value: Any) -> Any:
    """`value` (a number or Katib's string form) as the train field's type, checked against its bounds."""
    from pydantic import TypeAdapter

    field = train_field(name)
    return TypeAdapter(Annotated[field.annotation, *field.metadata]).validate_python(value)


class KatibSettings(Section):
    namespace: str | None = Field(None, description="Namespace of the Experiment; None: the launcher pod's own namespace (its service account's), else `default`.")
    name_prefix: str = Field(
        "resumo",
        pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$",
        max_length=31,
        description="Experiment name = prefix + '-' + 8 hex characters of a hash of the KFP run id (random without one), so a retried tune task finds its own Experiment; Katib caps names at 40 characters.",
    )
    output: str = Field(
        "s3://resumo/tune",
        pattern=r"^s3://[^/]+",
        description="S3 prefix trial pods write to: <output>/<trial name>/adapter, /metrics.json. Unset in a profile: <storage_root>/tune where storage_root is s3://."
    )
    image: str | None = Field(None, description="Trial image; None: the train image the pipeline was compiled with, or `resumo tune` runs with (resumo.images, RESUMO_IMAGE_PREFIX/TAG).")
    timeout_s: int = Field(48 * 3600, ge=1, description="Longest the launcher waits for the Experiment to finish before failing.")
    poll_s: float = Field(30.0, ge=0, description="Seconds between status reads while waiting.")
    delete: bool = Field(False, description="Delete the Experiment (and its trials) once its result is read, or when it failed or timed out; the adapters on S3 stay.")


class TuneConfig(Section):
    backend: Literal["optuna", "katib"] = Field(
        "optuna",
        description="`optuna`: trials run one after another in the tune step (kfp.local, laptops); `katib`: the tune step launches a Katib Experiment whose trials are pods of the train image.",
    )
    algorithm: Literal["tpe", "random", "grid", "bayesianoptimization"] = Field(
        "tpe",
        description="Katib's algorithm names. optuna maps them to TPESampler, RandomSampler, GridSampler; `bayesianoptimization` (Katib: scikit-optimize's GP) runs TPE under optuna.",
    )
    space: SearchSpace = Field(default_factory=SearchSpace)
    search: list[Literal["lora_r", "lora_alpha_ratio", "learning_rate", "lora_dropout", "epochs"]] = Field(
        default_factory=lambda: list(SearchSpace.TRAIN_KEYS),
        min_length=1,
        description="Which entries of `space` vary; the others keep their train.* value.",
    )
    max_trials: int = Field(12, ge=1, description="Most trials; `grid` stops earlier when the grid is exhausted.")
    parallel_trials: int = Field(3, ge=1, description="Katib trials running at once (each takes a GPU); optuna runs one at a time.")
    max_failed_trials: int = Field(3, ge=0, description="Katib marks the Experiment failed after this many failed trials.")
    early_stopping: Literal["medianstop", "none"] = Field(
        "medianstop",
        description="Katib only: `medianstop` stops a trial whose objective falls below the median of finished trials at the same epoch.",
    )
    median_stop_min_trials: int = Field(3, ge=1, description="Finished trials needed before medianstop may stop one (Katib's default: 3).")
    median_stop_start_step: int = Field(1, ge=1, description="Metric reports (one per epoch) a trial makes before medianstop may stop it.")
    seed: int = Field(42, description="Seed of the sampler (optuna) or the suggestion's random_state (Katib).")
    objective: Literal["rougeLsum"] = Field("rougeLsum", description="Validation metric to maximise (the original study chose r by validation scores).")
    retrain_best: bool = Field(
        False,
        description="Katib: train the best parameters again in the train step instead of handing on the best trial's adapter. An optuna study always retrains: its trials live and die in its own task.",
    )
    katib: KatibSettings = Field(default_factory=KatibSettings)
    policy: Literal["always", "reuse", "on_regression"] | None = Field(
        None,
        description="When to search (resumo.tune_policy): `always` searches every run; `reuse` trains once with the hyperparameters stored with the production version "
        "(it searches while there is none); `on_regression` trains once with them and searches again when that run's validation score falls more than "
        "`regression_margin` below production's. None: `always` for `resumo run|submit`, `reuse` for `resumo schedule`.",
    )
    regression_margin: float = Field(
        0.01, ge=0, description="on_regression: how far (absolute, in `objective` units) the reused hyperparameters' validation score may fall below production's before the run searches again."
    )
    registry: str | None = Field(None, description="Registry prefix whose production version the policy reads; unset in a profile it follows promote.registry.")

    @model_validator(mode="after")
    def _grid_needs_values(self) -> TuneConfig:
        if len(set(self.search)) != len(self.search):
            raise ValueError(f"search {self.search} repeats an entry; list each once")
        if self.algorithm == "grid":
            ranges = [name for name in self.search if getattr(self.space, name).values is None]
            if ranges:
                raise ValueError(f"grid needs a list of values for {ranges}; set tune.space.{ranges[0]}.values=[...] or use algorithm tpe/random")
        return self


# --- score ------------------------------------------------------------------


class ScoreConfig(Section):
    rouge_tokenizer: Literal["unicode", "rouge-score"] = Field(
        "unicode",
        description="`unicode` keeps accented letters (a token is a run of letters or digits); `rouge-score` is rouge_score's default, which splits 'ação' into 'a o', as the original study's numbers did.",
    )
    rouge_stem: bool = Field(False, description="Portuguese Snowball stemming of `unicode` tokens ('meninas' and 'menino' match); off as in the original study. Needs rouge_tokenizer=unicode.")
    metrics: list[Literal["rouge", "bertscore", "stats"]] = Field(
        ["rouge", "bertscore", "stats"],
        min_length=1,
        description="Metric groups computed: ROUGE-1/2/L/Lsum, BERTScore F1, output statistics (words, language, repetition, compression, novel n-grams). Promotion needs the group of promote.metric.",
    )
    bertscore_model: str = Field("bert-base-multilingual-cased", description="Encoder for BERTScore F1 (what lang='pt' picks); `tiny:bert` is the bundled tiny random one.")
    bertscore_num_layers: int | None = Field(None, ge=1, description="Encoder layer whose embeddings are compared; None uses bert-score's default for the model (9 for mBERT).")
    bertscore_rescale: bool = Field(False, description="Rescale F1 with bert-score's baseline for (pt, bertscore_model) so unrelated texts score near 0; off in the original study.")
    bertscore_baseline_path: str | None = Field(None, description="Baseline TSV (LAYER,P,R,F) for rescaling; None uses bert-score's bundled one for the model, which exists for mBERT only.")
    bootstrap_resamples: int = Field(1000, ge=0, description="Bootstrap resamples of the test articles for every interval; 0 gives no intervals (low = high = mean).")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the percentile bootstrap intervals.")
    seed: int = Field(42, description="Seed of the bootstrap resampling: the same scores give the same intervals.")
    reference_models: dict[str, str] = Field(
        {},
        description="Extra models to compare, name -> hub id, path or s3:// prefix, asked with the tuned model's prompt (original study: Llama-3.2-1B-Instruct, Qwen2.5-3B-Instruct).",
    )
    compare_production: bool = Field(
        True,
        description="In the pipeline, also score the production model of promote.registry on the same test articles, as promote.production_name, so promote's gates compare like with like; skipped while nothing is promoted.",
    )
    batch_size: int = Field(16, ge=1, description="Articles per generate call and pairs per BERTScore batch.")
    engine: Literal["auto", "dynamic", "static", "continuous", "vllm"] = Field(
        "auto",
        description="How the scored models generate (resumo.generation): `auto` is a static KV cache with compiled decoding on a GPU and the dynamic cache on CPU; "
        "`dynamic`, `static`, `continuous` (transformers' continuous batching) choose one; `vllm` generates through vLLM in the vllm image, one engine per base model "
        "with each tuned adapter as a LoRA request (resumo.vllm_engine). A compile-time choice: the score task runs in the image of its engine.",
    )
    long_inputs: Literal["keep", "cut"] = Field(
        "keep",
        description="What a model that records the token-length range of its training texts (resumo_model.json `input_tokens`) reads of a longer input, in `score` and `summarize`: "
        "`keep` the whole text (the input guard counts it), or `cut` it to its leading whole paragraphs within the longest training text, as scrape cut the training articles. "
        "Metrics, copy diagnostics and lead baselines still read the whole article. A small student tuned on short texts stops after a headline on ones 2-4 times longer (docs/scoring.md).",
    )
    max_new_tokens: int = Field(500, ge=1, description="Generation limit per summary (the teacher's limit in the original study).")
    max_samples: int | None = Field(None, ge=1, description="Test articles scored; None scores the whole test split (original study: 1,000).")
    min_language_words: int = Field(
        20,
        ge=1,
        description="Outputs with fewer words have an undetermined language: left out of not_portuguese_share and counted in language_undetermined_share. "
        "langid calls Portuguese 30% of the bundled corpus's sentences cut to 3 words, 92% cut to 10 and 98.8% cut to 20 (docs/scoring.md); 20 is also distill.min_words, "
        "under which the teacher filter does not judge language either.",
    )
    too_short_words: int = Field(
        30,
        ge=0,
        description="Outputs under this many words count in too_short_share (a copy diagnostic: a model that stops after a headline). "
        "Unset in a profile, it follows judge.too_short_words, the rubric's bound (original study: 30).",
    )

    @model_validator(mode="after")
    def _stemming_needs_unicode_tokens(self) -> ScoreConfig:
        if self.rouge_stem and self.rouge_tokenizer != "unicode":
            raise ValueError("rouge_stem=true needs rouge_tokenizer=unicode; `rouge-score` is kept exactly as published, without a stemmer")
        return self


# --- judge ------------------------------------------------------------------


class JudgeConfig(Section):
    base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint, e.g. http://vllm-judge:8000/v1 (vLLM, KServe, OpenAI). None uses the openai client's default (OPENAI_BASE_URL or api.openai.com)."
    )
    model: str = Field("meta-llama/Llama-3.1-8B-Instruct", description="Judge model name as the endpoint knows it (original study: the 8B teacher).")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="Name of the environment variable that holds the API key (on a cluster the pipeline mounts it, under this name, from cluster.secrets.openai); None for an endpoint without authentication. The key itself never goes in config.",
    )
    candidate: str = Field("tuned", description="Model whose summaries are compared with every other model's (`prediction_<name>` columns).")
    max_articles: int | None = Field(None, ge=1, description="Articles judged; None judges every article in the predictions. Each costs 2 requests per opponent.")
    response_format: Literal["auto", "json_schema", "json_object", "none"] = Field(
        "auto",
        description="How the answer is constrained: `json_schema` (vLLM guided decoding, OpenAI structured outputs), `json_object`, or `none` (the prompt alone). "
        "`auto` starts with json_schema and steps down when the endpoint refuses it (HTTP 400/422). Answers are validated against the schema whatever the mode.",
    )
    concurrency: int = Field(8, ge=1, le=256, description="Requests in flight at once; vLLM batches them, so raise it for a large server.")
    timeout_s: float = Field(120, gt=0, description="Seconds per request before the client gives up (then retries).")
    max_retries: int = Field(3, ge=0, le=10, description="Retries per request on connection errors, 429 and 5xx, with the openai client's backoff.")
    max_tokens: int = Field(300, ge=16, description="Generation limit of the verdict (a JSON object with a short explanation).")
    n_words: int = Field(100, ge=10, description="Summary length the rubric calls right (original study: about 100 words); in a profile it follows prompt.n_words.")
    too_long_words: int = Field(200, ge=1, description="The rubric calls a summary over this many words bad (original study: 200).")
    too_short_words: int = Field(30, ge=0, description="The rubric calls a summary under this many words bad (original study: 30).")
    confidence: float = Field(0.95, gt=0, lt=1, description="Level of the win-rate intervals (percentile bootstrap over articles).")
    bootstrap_resamples: int = Field(2000, ge=100, description="Bootstrap resamples of the articles for each interval.")
    min_position_consistency: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Below this share of articles with the same verdict in both orders, the report and promote flag the judge as position-biased and its win rates as meaningless "
        "(a judge answering 'A' every time scores 0; one picking at random, about 0.5). Win rates gate nothing in promote either way; 0 flags nothing.",
    )
    seed: int = Field(42, description="Seed of the bootstrap.")

    @model_validator(mode="after")
    def _lengths_in_order(self) -> JudgeConfig:
        if not self.too_short_words < self.n_words < self.too_long_words:
            raise ValueError(f"need too_short_words < n_words < too_long_words, got {self.too_short_words} < {self.n_words} < {self.too_long_words}")
        return self


# --- promote ----------------------------------------------------------------


class ModelRegistryConfig(Section):
    """Kubeflow Model Registry, which follows resumo's registry (promote.registry stays the source of truth)."""

    url: str | None = Field(
        None,
        description="Model Registry REST endpoint with scheme and port (https://model-registry-service.kubeflow.svc.cluster.local:8443); "
        "each promoted version is also registered there, and its `production` label follows production.json. None: off. "
        "An http:// URL talks plain HTTP (the client's is_secure=False).",
    )
    model_name: str = Field("resumo", min_length=1, description="Registered model that resumo's versions are filed under, one Model Registry version per resumo version.")
    author: str = Field("resumo", min_length=1, description="Author of each version and owner of the registered model, as Model Registry shows them.")
    token_env: str = Field(
        "MODEL_REGISTRY_TOKEN",
        description="Environment variable holding a bearer token (the pipeline sets it from the Secret cluster.secrets.model_registry); unset or empty: `token_file`.",
    )
    token_file: str | None = Field(
        None,
        description="File holding a bearer token, read when `token_env` is empty. None: the client's own default, the file named by "
        "KF_PIPELINES_SA_TOKEN_PATH, else the pod's service-account token.",
    )
    verify_tls: bool = Field(True, description="Verify an https:// server's certificate. False is the client's is_secure=False: no verification, and a token becomes optional.")
    ca_bundle: str | None = Field(None, description="PEM file of the CA that signed the server's certificate (an in-cluster CA); None: the system's CAs.")

    @field_validator("url")
    @classmethod
    def _url_has_a_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for plain HTTP), e.g. https://model-registry-service.kubeflow:8443")
        return url


class PromoteConfig(Section):
    registry: str = Field(
        "s3://resumo/registry", description="URI prefix of the model registry: versions under models/, the production pointer in production.json. Unset in a profile: <storage_root>/registry."
    )
    metric: Literal["rougeLsum", "bertscore_f1"] = Field("rougeLsum", description="Score the candidate must beat production on (the issue's gate: ROUGE-Lsum).")
    min_improvement: float = Field(0.0, ge=0, description="The candidate is promoted only if metric > production's + this (absolute, e.g. 0.005 = half a ROUGE point).")
    max_bertscore_drop: float | None = Field(
        0.005,
        ge=0,
        description="Refuse a candidate whose BERTScore F1 is below production's by more than this (absolute); None skips the check. No-op when `metric` is bertscore_f1.",
    )
    max_not_portuguese: float | None = Field(
        0.02,
        ge=0,
        le=1,
        description="Refuse a candidate whose share of outputs not in Portuguese is above this (the study's models: 0-1.9%). "
        "scores.json must then have `not_portuguese_share`. 1.0 lets any share pass (the smoke profile: tiny random models write no language); None skips the check (CLI only: a KFP parameter cannot carry None).",
    )
    min_lead_difference: float | None = Field(
        None,
        description="Refuse a candidate unless the lower end of its paired-difference interval on `metric` against the lead of each test article, cut at the candidate's "
        "own output length (scores.json `versus_lead`), is above this (absolute; 0: it beats copying the opening at score.confidence). None skips the check: the "
        "default, since the extractive teacher (the smoke profile's) teaches a student to copy the lead. A candidate scored without `versus_lead` is an error.",
    )
    production_name: str = Field(
        "production",
        description="Name, in scores.json, of the production model scored on the same test articles. When absent, the candidate is compared with the scores stored in the production pointer (a different test set: logged as a warning).",
    )
    model_registry: ModelRegistryConfig = Field(default_factory=ModelRegistryConfig)

    @field_validator("registry")
    @classmethod
    def _registry_is_a_prefix(cls, registry: str) -> str:
        if not registry.strip():
            raise ValueError("is empty; give a path or an s3://bucket/prefix")
        return registry


# --- cluster ----------------------------------------------------------------


class GpuConfig(Section):
    accelerator: str = Field("nvidia.com/gpu", description="Extended resource a GPU task requests (`nvidia.com/gpu`, `amd.com/gpu`); a pipeline parameter, so a run can pick another.")
    count: int = Field(1, ge=1, le=16, description="GPUs per GPU task (train, tune trials, a vLLM teacher). The 8B teacher and the 0.5B student each fit one 80 GB GPU.")
    cpu: str = Field("8", pattern=r"^\d+(\.\d+)?m?$", description="CPU request of a GPU task, Kubernetes quantity (`8`, `500m`): tokenisation and data loading run beside the GPU.")
    memory: str = Field("48Gi", pattern=r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$", description="Memory request of a GPU task, Kubernetes quantity: loading an 8B teacher in bf16 needs about 16 GB of host memory, with headroom.")
    tolerations: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        description="Pod tolerations of GPU tasks (Kubernetes Toleration objects); the default tolerates the taint GPU node pools usually carry.",
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels a GPU task must run on, e.g. {'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3'}; empty: any GPU node.")

    @field_validator("tolerations")
    @classmethod
    def _kubernetes_tolerations(cls, tolerations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Kubernetes would refuse these only when the pod is created, hours into a run.
        for t in tolerations:
            unknown = set(t) - {"key", "operator", "value", "effect", "tolerationSeconds"}
            if unknown:
                raise ValueError(f"{sorted(unknown)} are not Toleration fields; use key, operator, value, effect, tolerationSeconds")
            if t.get("operator", "Equal") not in ("Equal", "Exists"):
                raise ValueError(f"operator {t['operator']!r} must be Equal or Exists")
            if t.get("effect", "") not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
                raise ValueError(f"effect {t['effect']!r} must be NoSchedule, PreferNoSchedule or NoExecute")
        return tolerations


class SecretsConfig(Section):
    s3: str = Field("resumo-s3", description="Secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL, set as environment on every task (see manifests/).")
    hub: str = Field("resumo-hf", description="Secret with HF_TOKEN for gated hub models (Llama); optional: a task starts without it.")
    openai: str = Field(
        "resumo-openai",
        description="Secret whose key OPENAI_API_KEY is mounted into the distill shards (openai teacher) and the judge, each under the variable its config's api_key_env names; none is mounted where api_key_env is null.",
    )
    model_registry: str = Field(
        "resumo-model-registry",
        description="Secret with MODEL_REGISTRY_TOKEN, set on the promote task when promote.model_registry.url is set; optional: without it the client reads the service-account token.",
    )


class ClusterConfig(Section):
    """Where and how the pipeline runs on Kubeflow; not passed to any stage."""

    host: str | None = Field(None, description="KFP API endpoint (https://kubeflow.example.com/pipeline); None: the in-cluster service or the kubeconfig's cluster through the API server proxy.")
    namespace: str | None = Field(None, description="Kubeflow profile namespace of multi-user deployments; None for single-user KFP.")
    experiment: str = Field("resumo", description="Experiment that runs and recurring runs are filed under in the UI.")
    pipeline_name: str = Field("resumo", description="Pipeline name in the UI; each submit uploads a new version of it.")
    pipeline_root: str | None = Field(None, pattern=r"^(s3|gs|minio|file)://.+", description="Where KFP keeps artifacts (s3://bucket/prefix); None: the namespace's `kfp-launcher` ConfigMap default (manifests/).")
    token_env: str = Field("KF_PIPELINES_TOKEN", description="Environment variable holding a bearer token for the KFP API; unset or empty: in-cluster service-account token, then kubeconfig.")
    kube_context: str | None = Field(None, description="kubeconfig context used when neither a token nor an in-cluster token is found; None: the current context.")
    service_account: str | None = Field(
        None,
        description="Kubernetes service account the run's pods and Katib's trial pods use; None: the namespace's pipeline runner for the run, its `default` for trials (manifests/ binds the Katib launcher role to the runner).",
    )
    retries: int = Field(3, ge=0, le=10, description="Retries of the tasks that talk to the network (after 1, 2, 4 ... minutes, at most 10); `resumo run` sets 0, so a local failure fails at once.")
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)


# --- pipeline ---------------------------------------------------------------


# Values a stage's section carries (a component gets its section alone) but a profile sets once,
# elsewhere: each is filled in from its source unless the section sets it, and must then agree.
# PipelineConfig._derive runs from this table, in its order (tune.registry follows the derived
# promote.registry). section field -> what it follows: a dotted key (its value, or its default),
# or "storage_root + /key" under the root, "(an s3:// root)" only when the root is on S3.
DERIVED = {
    "distill.prompt": "prompt",
    "train.prompt": "prompt",
    "judge.n_words": "prompt.n_words",
    "scrape.tokenizer": "train.student",
    "distill.teacher.max_input_tokens": "scrape.max_tokens",
    "distill.cache": "storage_root + /cache/teacher",
    "tune.katib.output": "storage_root + /tune (an s3:// root)",
    "train.trainjob.output": "storage_root + /train (an s3:// root)",
    "promote.registry": "storage_root + /registry",
    "train.checkpoint_store": "storage_root + /checkpoints",
    "scrape.checkpoint_store": "storage_root + /checkpoints",
    "scrape.cache": "storage_root + /cache/articles",
    "tune.registry": "promote.registry",
    "score.too_short_words": "judge.too_short_words",  # too_short_share counts what the rubric calls too short
}
# Renamed fields: old dotted key -> new, so an old profile gets told what to write instead.
RENAMED = {
    "judge.bootstrap_samples": "judge.bootstrap_resamples",
    "scrape.api.timeout_seconds": "scrape.api.timeout_s",
    "scrape.api.backoff_seconds": "scrape.api.backoff_s",
    "scrape.api.max_wait_seconds": "scrape.api.max_wait_s",
    # One setting per Secret and per service account: trial pods use the run's.
    "tune.katib.s3_secret": "cluster.secrets.s3",
    "tune.katib.service_account": "cluster.service_account",
    "train.trainjob.s3_secret": "cluster.secrets.s3",
    "train.trainjob.service_account": "cluster.service_account",
}


class PipelineConfig(Section):
    storage_root: str = Field(
        "s3://resumo",
        description="Root (s3://bucket/prefix or a path) of what outlives a run: the teacher cache (<root>/cache/teacher), Katib trial outputs (<root>/tune, an s3:// root only: trial pods write to S3) and the model registry (<root>/registry), unless a section sets its own.",
    )
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="The prompt the teacher is asked, the student is tuned and scored with, and the judge's rubric length follows.")
    scrape: ScrapeConfig = Field(default_factory=ScrapeConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    promote: PromoteConfig = Field(default_factory=PromoteConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, values: Any) -> Any:
        """Fill each DERIVED field its section leaves unset from what it follows."""
        if not isinstance(values, dict):
            return values
        values = {k: _as_dict(v) for k, v in values.items()}
        root = str(values.get("storage_root") or cls.model_fields["storage_root"].default)
        for key, source in DERIVED.items():
            *path, field = key.split(".")
            section = values
            for name in path:  # copied on the way down: the caller's nested mappings stay as given
                if not isinstance(section.setdefault(name, {}), dict):
                    break  # a section that is not a mapping: pydantic says so
                section[name] = dict(section[name])
                section = section[name]
            else:
                if field not in section:
                    value = _derived_value(values, source, root)
                    if value is not _UNSET:
                        section[field] = value
        return values

    @model_validator(mode="after")
    def _sections_agree(self) -> PipelineConfig:
        for name, section in (("distill", self.distill), ("train", self.train)):
            if section.prompt != self.prompt:
                raise ValueError(f"{name}.prompt ({section.prompt.model_dump()}) differs from prompt ({self.prompt.model_dump()}); the prompt is set once, as prompt.* (e.g. --set prompt.n_words=40)")
        if self.judge.n_words != self.prompt.n_words:
            raise ValueError(f"judge.n_words ({self.judge.n_words}) differs from prompt.n_words ({self.prompt.n_words}); the rubric follows the prompt: set prompt.n_words")
        scored = {"baseline", "tuned", *self.score.reference_models}
        clash = sorted({"baseline", "tuned", self.promote.production_name} & set(self.score.reference_models))
        if clash:
            raise ValueError(f"score.reference_models reuses the name(s) {clash} of a model the pipeline scores; rename them")
        if self.score.compare_production:
            scored.add(self.promote.production_name)
        if self.judge.candidate not in scored:
            raise ValueError(f"judge.candidate {self.judge.candidate!r} is not a model score scores ({sorted(scored)}); pick one of them")
        return self

    def display(self) -> dict[str, Any]:
        """The values as a user sets them: a field that follows `prompt` shows there only."""
        hidden: dict[str, set[str]] = {}
        for key, source in DERIVED.items():
            if source.startswith("prompt"):
                section, field = key.split(".", 1)
                hidden.setdefault(section, set()).add(field)
        return self.model_dump(exclude=hidden)

    def stage_parameters(self) -> dict[str, dict[str, Any]]:
        """Each stage's values as KFP pipeline parameters (JSON structs, which cannot hold null).

        A None is left out, which brings back the field's default when the
        component validates its section alone; that is only faithful where the
        default is None too, so check the round trip of each section.
        """
        params = self.model_dump(mode="json", exclude_none=True, exclude={"cluster"})
        for name, values in params.items():
            section = getattr(self, name)
            if isinstance(section, Section) and type(section).model_validate(values) != section:
                raise ConfigError(f"a field of {name} set to None has a non-None default, which a KFP parameter cannot express; set it to a value")
        return params


def _as_dict(value: Any) -> Any:
    # A section given as a model (in code) counts only what was set on it, so the rest may be derived.
    return value.model_dump(exclude_unset=True) if isinstance(value, BaseModel) else dict(value) if isinstance(value, dict) else value


_UNSET = object()
_ROOT = "storage_root + /"
_S3_ONLY = " (an s3:// root)"


def _derived_value(values: dict, source: str, root: str) -> Any:
    """What a DERIVED field follows: `storage_root + /key` under the root, else the value at a dotted key or its default."""
    if source.startswith(_ROOT):
        key = source.removeprefix(_ROOT).removesuffix(_S3_ONLY)
        if source.endswith(_S3_ONLY) and not root.startswith("s3://"):  # those pods write to S3 only: a local root keeps the S3 default
            return _UNSET
        return _under(root, key)
    value: Any = values
    model: Any = PipelineConfig
    for name in source.split("."):
        if not isinstance(value, dict) or model is None:
            return _UNSET
        field = model.model_fields[name]
        nested = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) else None
        value = value[name] if name in value else {} if nested else field.default  # a section unset: its defaults
        model = nested
    return value


def _under(root: str, key: str) -> str:
    return f"{root.rstrip('/')}/{key}"


def load_config(profile: str | Path | None = "smoke", overrides: list[str] | None = None) -> PipelineConfig:
    """Defaults, then the profile (a name in PROFILES or a YAML path), then `key=value` overrides."""
    values = _read_profile(profile) if profile else {}
    for override in overrides or []:
        key, value = _parse_override(override)
        set_dotted(values, key, value)
    return validate(PipelineConfig, values)


def validate(model: type[Section], values: dict[str, Any]) -> Any:
    """Validate `values` into `model`, turning pydantic's errors into one line per field."""
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "config"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden" and field in RENAMED:
            msg = f"replaced by {RENAMED[field]}: set that instead"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field; see `resumo config --profile smoke` for the valid keys"
        elif e["type"] == "literal_error":
            msg = f"must be {msg.removeprefix('Input should be ')}"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        lines.append(f"{field}{shown}: {msg}")
    return "invalid config: " + "; ".join(lines)


def _read_profile(profile: str | Path) -> dict[str, Any]:
    if str(profile) in PROFILES:
        text = resources.files("resumo.profiles").joinpath(f"{profile}.yaml").read_text(encoding="utf-8")
        origin = f"profile {profile!r}"
    else:
        path = Path(profile)
        if not path.is_file():
            raise ConfigError(f"profile {str(profile)!r} is neither one of {list(PROFILES)} nor a YAML file that exists")
        text, origin = path.read_text(encoding="utf-8"), str(path)
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{origin} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{origin} must be a mapping of sections (scrape:, train:, ...), not {type(values).__name__}")
    return values


def _parse_override(override: str) -> tuple[str, Any]:
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not of the form section.field=value (e.g. train.lora.r=16)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # an unparsable literal is meant as a plain string
    return key.strip(), value


def set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    node = values
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is a value, not a section")
        node = child
    node[leaf] = value

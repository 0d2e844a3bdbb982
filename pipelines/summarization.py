"""The resumo pipeline: scrape -> distill -> tune -> train -> score -> promote.

Compiled for a cluster with `resumo compile --output resumo.yaml` and run on a
laptop, as this same function, with `resumo run` (kfp.local). Parameters are the
validated config, one dict per stage, so the UI shows them grouped by stage.

The KFP UI lists a pipeline's parameters in the order the compiled spec keeps
them, which is alphabetical (the compiler sorts keys; the run form iterates
them). So each parameter name starts with its step number: `s1_scrape` ...
`s7_promote` read in pipeline order, `s0_run_date` comes first and the GPU
settings (`s9_gpu_*`) last. Cross-cutting settings (caching, retries, GPU
requests, secrets) are small functions below, applied per task.
"""

from typing import NamedTuple

from kfp import dsl, kubernetes

from resumo.components import TRAIN_IMAGE
from resumo import run_parameters
from resumo.components.check import check_parameters
from resumo.components.distill import distill_shard, merge_pairs, plan_shards
from resumo.components.katib import tune as katib_tune
from resumo.components.judge import judge
from resumo.components.promote import promote
from resumo.components.report import report
from resumo.components.score import score_component
from resumo.components.scrape import scrape
from resumo.components.train import train
from resumo.components.trainjob import train as trainjob_train
from resumo.components.tune import tune
from resumo.config import PipelineConfig

# A transient failure (S3 throttling, a teacher endpoint restarting, a hub 5xx) is
# retried after 1, 2, 4 minutes (cluster.retries times); a bug fails three times within 10 minutes.
BACKOFF = {"backoff_duration": "60s", "backoff_factor": 2.0, "backoff_max_duration": "600s"}


def build(cfg: PipelineConfig):
    """The pipeline function, its parameters defaulting to `cfg` (already validated)."""
    defaults = cfg.stage_parameters()
    # Katib trials run the train image this pipeline is compiled with (REGISTRY/TAG), not the one the launcher pod would name.
    defaults["tune"]["katib"].setdefault("image", TRAIN_IMAGE)
    if cfg.train.backend == "trainjob":  # so do a TrainJob's nodes
        defaults["train"]["trainjob"].setdefault("image", TRAIN_IMAGE)
    gpu = cfg.cluster.gpu
    gpu_teacher = cfg.distill.teacher.backend in ("vllm", "transformers")

    @dsl.pipeline(
        name=cfg.cluster.pipeline_name,
        description="Fine-tune a small language model to summarise Portuguese (LoRA, distilled targets).",
        pipeline_root=cfg.cluster.pipeline_root,
    )
    def resumo(
        s0_run_date: str = "",
        s1_scrape: dict = defaults["scrape"],
        s2_distill: dict = defaults["distill"],
        s3_tune: dict = defaults["tune"],
        s4_train: dict = defaults["train"],
        s5_score: dict = defaults["score"],
        s6_judge: dict = defaults["judge"],
        s7_promote: dict = defaults["promote"],
        s9_gpu_accelerator: str = gpu.accelerator,
        s9_gpu_count: int = gpu.count,
        s9_gpu_cpu: str = gpu.cpu,
        s9_gpu_memory: str = gpu.memory,
        s9_gpu_tolerations: list = gpu.tolerations,
        s9_gpu_node_selector: dict = gpu.node_selector,
    ):
        """Args:
        s0_run_date: The day the run reads the world as of (YYYY-MM-DD). Keys scrape's cache, so a
            new date re-scrapes and a rerun the same day reuses; `resumo schedule` sets it to the
            scheduled day and `resumo submit` to today.
        s1_scrape ... s7_promote: each stage's config (`resumo config -p full` shows them). The judge
            task is compiled in only when judge.base_url is set.
        s9_gpu_*: what every GPU task requests and where it may run.
        """
        scrape_config, distill_config, tune_config = s1_scrape, s2_distill, s3_tune
        train_config, score_config, judge_config, promote_config = s4_train, s5_score, s6_judge, s7_promote
        on_gpu = _GpuRequest(s9_gpu_accelerator, s9_gpu_count, s9_gpu_cpu, s9_gpu_memory, s9_gpu_tolerations, s9_gpu_node_selector)
        secrets = cfg.cluster.secrets

        # 0. The run's values against the compiled ones (run_parameters.CHOICES), before anything runs.
        checked = check_parameters(
            compiled=run_parameters.compiled(cfg), scrape=scrape_config, distill=distill_config, tune=tune_config,
            train=train_config, judge=judge_config, promote=promote_config,
        ).set_display_name("check parameters")  # fmt: skip
        # 1. Articles from the dump, cleaned and split by article.
        articles = scrape(config=scrape_config, run_date=s0_run_date).set_display_name("scrape").after(checked)
        articles.set_cpu_request(str(cfg.scrape.workers))  # one core per cleaning process
        _talks_to_network(cfg, _with_s3(articles, secrets))
        # 2. The teacher's summaries, the student's targets: distill.shards tasks in parallel (one GPU
        #    each), merged. Their cache key holds today's articles, and the teacher cache in S3 makes
        #    a rerun distil only new revisions.
        shards = plan_shards(config=distill_config).set_display_name("distill: plan shards").after(checked)
        with dsl.ParallelFor(shards.output) as shard:
            part = distill_shard(cfg.distill.teacher.backend)(config=distill_config, shard=shard, articles=articles.outputs["articles"])
            part.set_display_name("distill: shard")
            part = _with_model_hub(_with_s3(part, secrets), secrets)
            if cfg.distill.teacher.backend == "openai":
                _with_openai(part, secrets, cfg.distill.teacher.api_key_env)
            _talks_to_network(cfg, part)
            if gpu_teacher:
                # A vllm teacher sharded over tensor_parallel_size GPUs gets that many; unset, it uses the s9_gpu_count it gets.
                parallel = cfg.distill.teacher.tensor_parallel_size if cfg.distill.teacher.backend == "vllm" else None
                _on_gpu(part, on_gpu._replace(count=parallel) if parallel else on_gpu)
        pairs = merge_pairs(articles=articles.outputs["articles"], shards=dsl.Collected(part.outputs["pairs"])).set_display_name("distill")
        # 3. Search LoRA hyperparameters on the validation split: a Katib Experiment on a cluster
        #    (the launcher on CPU, each trial a GPU pod), else an optuna study in the task itself.
        if cfg.tune.backend == "katib":
            search = katib_tune(
                config=tune_config,
                train_config=train_config,
                pairs=pairs.outputs["pairs"],
                s3_secret=secrets.s3,  # trial pods read what every task reads, as the run's service account
                service_account=cfg.cluster.service_account or "",
                # The launcher runs on CPU; its trial pods get what every GPU task of this run gets.
                **{f"gpu_{field}": value for field, value in on_gpu._asdict().items()},
            ).set_display_name("tune")
            _talks_to_network(cfg, _with_s3(search, secrets))
        else:
            search = tune(config=tune_config, train_config=train_config, pairs=pairs.outputs["pairs"], gpu_count=s9_gpu_count)  # gpu_count: for its cost figures
            search = _on_gpu(search.set_display_name("tune"), on_gpu)
            _with_model_hub(_with_s3(search, secrets), secrets)
        # 4. Train the student with the best hyperparameters; after Katib, the best trial's
        #    adapter is handed on instead (it was trained with exactly those), unless asked.
        if cfg.tune.backend == "katib" and not cfg.tune.retrain_best:
            tuned = train(config=train_config, params=search.outputs["best_params"], pairs=pairs.outputs["pairs"], best_adapter=search.outputs["best_adapter"])
            _talks_to_network(cfg, _with_s3(tuned.set_display_name("train"), secrets))  # a download from S3
        elif cfg.train.backend == "trainjob":
            # A CPU launcher: a Kubeflow Trainer TrainJob trains, each node with this run's GPU settings;
            # named from a key of its inputs, so a retry meets it instead of training twice.
            tuned = trainjob_train(
                config=train_config,
                params=search.outputs["best_params"],
                pairs=pairs.outputs["pairs"],
                s3_secret=secrets.s3,
                service_account=cfg.cluster.service_account or "",
                **{f"gpu_{field}": value for field, value in on_gpu._asdict().items()},
            ).set_display_name("train")
            _talks_to_network(cfg, _with_s3(tuned, secrets))
        else:
            tuned = _on_gpu(
                train(config=train_config, params=search.outputs["best_params"], pairs=pairs.outputs["pairs"]).set_display_name("train"), on_gpu
            )
            # Retried: a retry resumes from the checkpoints kept in train.checkpoint_store (resumo.checkpoints).
            _talks_to_network(cfg, _with_model_hub(_with_s3(tuned, secrets), secrets))
        # 5. Untuned against tuned student (and production, and reference models) on the test split.
        #    On this run's GPU: each model generates a summary of every test article (1,000 in the study).
        scores = _on_gpu(
            score_component(cfg.score.engine)(config=score_config, train_config=train_config, promote_config=promote_config, pairs=pairs.outputs["pairs"], model=tuned.outputs["model"]).set_display_name("score"),
            on_gpu,
        )
        _talks_to_network(cfg, _with_model_hub(_with_s3(scores, secrets), secrets))
        # 6. An LLM judge, where one is configured: the tuned student against every other model.
        judged = {}
        if cfg.judge.base_url:
            verdicts = judge(config=judge_config, pairs=pairs.outputs["pairs"], scores=scores.outputs["scores"]).set_display_name("judge")
            _talks_to_network(cfg, _with_openai(verdicts, secrets, cfg.judge.api_key_env))
            judged = {"judge": verdicts.outputs["verdicts"]}
        # The report for the UI: Metrics, an HTML page and a Markdown summary.
        page = report(scores=scores.outputs["scores"], model=tuned.outputs["model"], **judged).set_display_name("report")
        # 7. Publish if it beats production, the report with it. Never cached: production may have moved since.
        published = promote(
            config=promote_config,
            model=tuned.outputs["model"],
            scores=scores.outputs["scores"],
            report=page.outputs["html"],
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,  # recorded in the pointer and in Model Registry
            **judged,
        ).set_display_name("promote")
        _never_cached(_talks_to_network(cfg, _with_s3(published, secrets)))
        if cfg.promote.model_registry.url:
            _with_model_registry_token(published, cfg, secrets)

    return resumo


class _GpuRequest(NamedTuple):
    """The s9_gpu_* pipeline parameters, applied together to each GPU task."""

    accelerator: str
    count: int
    cpu: str
    memory: str
    tolerations: list
    node_selector: dict


def _on_gpu(task, gpu: _GpuRequest):
    task.set_accelerator_type(gpu.accelerator).set_accelerator_limit(gpu.count)
    task.set_cpu_request(gpu.cpu).set_memory_request(gpu.memory)
    kubernetes.add_toleration_json(task, gpu.tolerations)
    kubernetes.add_node_selector_json(task, gpu.node_selector)
    return task


def _never_cached(task):
    # KFP caches every task on its inputs by default; that is right for all but promote.
    return task.set_caching_options(enable_caching=False)


def _talks_to_network(cfg, task):
    return task.set_retry(num_retries=cfg.cluster.retries, **BACKOFF) if cfg.cluster.retries else task


def _with_s3(task, secrets):
    # The dump, the teacher cache, Katib trial data and the registry live in S3.
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
    return kubernetes.use_secret_as_env(task, secrets.s3, {key: key for key in keys})


def _with_model_hub(task, secrets):
    # Optional: public models need no token, and a missing Secret must not stop the pod.
    return kubernetes.use_secret_as_env(task, secrets.hub, {"HF_TOKEN": "HF_TOKEN"}, optional=True)


def _with_openai(task, secrets, api_key_env: str | None):
    # The Secret's one key, under the variable this task's config names (resumo.chat_client reads
    # it); an endpoint without authentication (api_key_env null) gets nothing mounted. Optional,
    # so a missing Secret fails the task with chat_client's message instead of a pod stuck in
    # CreateContainerConfigError.
    if api_key_env is None:
        return task
    return kubernetes.use_secret_as_env(task, secrets.openai, {"OPENAI_API_KEY": api_key_env}, optional=True)


def _with_model_registry_token(task, cfg, secrets):
    # Optional: without the Secret the client reads the pod's service-account token.
    token_env = cfg.promote.model_registry.token_env
    return kubernetes.use_secret_as_env(task, secrets.model_registry, {"MODEL_REGISTRY_TOKEN": token_env}, optional=True)

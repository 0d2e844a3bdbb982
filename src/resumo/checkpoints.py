"""Checkpoints that outlive the pod.

On a cluster a task's output folder lives on the pod's disk until the task succeeds
(KFP uploads outputs only then), so a preempted GPU pod or a killed scrape would lose
every checkpoint with it. The long stages therefore also keep their checkpoints in
object storage, under `<store>/<run id>/<task>/`, so a retry, on another node with an
empty disk, finds what its first attempt saved. They are deleted once the task succeeds.

In the pipeline the "run id" is `inputs_key(...)` of the task's inputs, not the KFP run id
itself: every attempt of a task has the same inputs, and these include artifacts under the
run's own root, so the key is the run's and the task's; a run id passed in as an input
would instead make the task miss KFP's cache on every run (kubeflow/pipelines#7201).

For train: a TrainerCallback mirrors each checkpoint the Trainer saves (its
trainer_state.json last, so a half-uploaded checkpoint is never taken for a complete
one), and SIGTERM, which the kubelet sends a grace period before it kills a pod,
asks the Trainer to save at the end of the current step and stop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import signal
import threading
from pathlib import Path

from transformers import TrainerCallback

from resumo import artifacts, storage
from resumo.errors import ResumoError

log = logging.getLogger(__name__)

STATE = artifacts.TRAINER_STATE  # the Trainer writes it last; here it is uploaded last
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class Preempted(ResumoError):
    """Stopped on SIGTERM after saving a checkpoint; a retry resumes from it."""


def location(store: str | None, run_id: str | None, task: str) -> str | None:
    """Where `task` of run `run_id` keeps its checkpoints; None (only the local folder) without both."""
    if not store or not run_id:
        return None
    return storage.join(storage.join(store, _safe(run_id)), task)


def inputs_key(*inputs) -> str:
    """A run key from a task's inputs (JSON-able values): the same on each retry of the task."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _safe(run_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", run_id) or run_id in (".", ".."):
        raise ResumoError(f"run id {run_id!r} cannot name a storage prefix; use letters, digits, '.', '_' and '-' (a KFP run id is a UUID)")
    return run_id


def remote_steps(remote: str) -> list[int]:
    """Steps of the complete checkpoints under `remote`, oldest first."""
    steps = set()
    for key in storage.list_keys(remote):
        head, _, name = key.partition("/")
        match = _CHECKPOINT.match(head)
        if match and name == STATE:
            steps.add(int(match.group(1)))
    return sorted(steps)


def restore(remote: str, checkpoints_dir: Path) -> Path | None:
    """Download the newest complete checkpoint under `remote` into `checkpoints_dir`, unless one
    as new is there already; the local checkpoint to resume from, or None."""
    steps = remote_steps(remote)
    if not steps:
        return None
    name = f"checkpoint-{steps[-1]}"
    local = checkpoints_dir / name
    if not (local / STATE).exists():
        log.info("train: restoring %s from %s", name, remote)
        storage.download(storage.join(remote, name), local)
    return local


def clean(remote: str) -> None:
    """The task succeeded: its checkpoints are no longer needed."""
    storage.delete_prefix(remote)
    log.info("checkpoints under %s deleted: the task succeeded", remote)


class Mirror(TrainerCallback):
    """Upload each checkpoint the Trainer saves to `remote` (rank 0 only), then drop the older ones there."""

    def __init__(self, remote: str):
        self.remote = remote

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        name = f"checkpoint-{state.global_step}"
        local = Path(args.output_dir) / name
        files = sorted(p for p in local.rglob("*") if p.is_file())
        for path in sorted(files, key=lambda p: p.name == STATE):  # trainer_state.json last: the mark of a complete one
            storage.write_bytes(storage.join(storage.join(self.remote, name), path.relative_to(local).as_posix()), path.read_bytes())
        for step in remote_steps(self.remote):
            if step < state.global_step:
                storage.delete_prefix(storage.join(self.remote, f"checkpoint-{step}"))
        log.info("train: %s mirrored to %s", name, self.remote)


class StopOnSigterm(TrainerCallback):
    """On SIGTERM, save at the end of the current optimizer step and stop; `stopped` says it happened.

    Use as a context manager around trainer.train(): it installs the handler (main thread
    only, as Python requires) and puts the previous one back.
    """

    def __init__(self):
        self.requested = False
        self.stopped = False
        self._previous = None

    def __enter__(self) -> StopOnSigterm:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._request)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _request(self, signum, frame) -> None:
        log.warning("train: SIGTERM: saving a checkpoint at the end of this step, then stopping")
        self.requested = True

    def on_step_end(self, args, state, control, **kwargs):
        # On the last step, finish instead: the final evaluation runs at the epoch's end, and a
        # checkpoint of the last step would resume to a run with nothing left to evaluate.
        if self.requested and state.global_step < state.max_steps:
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        # Cut short mid-epoch: no evaluation (minutes of generation the grace period has not
        # got), and no second save of the step just saved. The resumed run evaluates this epoch.
        if self.stopped:
            control.should_evaluate = False
            control.should_save = False
        return control

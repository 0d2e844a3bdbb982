"""Run a compiled pipeline's tasks in images built here, each with its executor's own command.

    python images/run_in_image.py PIPELINE.yaml --root DIR [--use IMAGE=LOCAL ...] [--env NAME=VALUE ...]
    python images/run_in_image.py --check DIR        # what the run under DIR wrote

kfp.local does what KFP's launcher does before a container starts: it walks the compiled
DAG, writes each task's executor input (artifact URIs under the pipeline root) and fills the
placeholders of the executor's `command` and `args` (`--executor_input {{$}}`,
`--function_to_execute ...`). Its DockerRunner then starts the image; here `buildah run`
does, with the pipeline root bind-mounted at the same path, so a URI means the same file
inside and out, and the task writes its outputs and executor_output.json there.

`--use` runs an image's tasks in another (the smoke pipeline's resumo-train tasks in the
cpu image, which has the same packages with torch's CPU build).
Needs root, buildah and the images; BUILDAH (default: buildah) is the command with its
storage options.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

from kfp import components, local
from kfp.local import docker_task_handler, status

BUILDAH = shlex.split(os.environ.get("BUILDAH", "buildah"))


class BuildahTaskHandler(docker_task_handler.DockerTaskHandler):
    """kfp.local's DockerRunner task, started with `buildah run` (no Docker daemon here)."""

    use: dict[str, str] = {}
    containers: dict[str, str] = {}  # one working container per image: vfs copies the image for each
    lock = threading.Lock()

    def run(self) -> status.Status:
        mounts = [f"--volume={host}:{spec['bind']}:{spec['mode']}" for host, spec in self.get_volumes_to_mount().items()]
        env = [f"--env={name}={value}" for name, value in self.env_vars.items()]
        command = [*BUILDAH, "run", "--isolation", "chroot", *mounts, *env, self.container(), "--", *self.full_command]
        brief = " ".join(a if len(a) < 80 and "\n" not in a else "<...>" for a in self.full_command)  # the program and JSON elided
        print(f"buildah run {self.use.get(self.image, self.image)} (the task's image: {self.image}) -- {brief}", flush=True)
        return status.Status.SUCCESS if subprocess.run(command).returncode == 0 else status.Status.FAILURE

    def container(self) -> str:
        image = self.use.get(self.image, self.image)
        with self.lock:
            if image not in self.containers:
                self.containers[image] = _buildah("from", "--pull-never", image)
            return self.containers[image]


def _buildah(*args) -> str:
    return subprocess.run([*BUILDAH, *args], check=True, capture_output=True, text=True).stdout.strip()


def run(pipeline_yaml: Path, root: Path, use: dict[str, str], env: dict[str, str]):
    docker_task_handler.DockerTaskHandler = BuildahTaskHandler  # read by kfp.local at each task
    BuildahTaskHandler.use = use
    local.init(runner=local.DockerRunner(environment=env), pipeline_root=str(root), raise_on_error=True)
    try:
        components.load_component_from_file(str(pipeline_yaml))()  # the compiled spec, with its defaults
    finally:
        for container in BuildahTaskHandler.containers.values():
            _buildah("rm", container)


def check(root: Path) -> dict:
    """What a smoke run in the images must have written; a summary of it, or SystemExit naming what is missing."""
    from resumo.pipelines.local import summarize_run

    (run,) = {p.parent.parent for p in root.glob("*/*/executor_output.json")}  # <pipeline>-<time>/<task>/
    tasks = {p.parent.name: json.loads(p.read_text()) for p in run.glob("*/executor_output.json")}
    for task in ("scrape", "plan-shards", "merge-pairs", "tune", "train", "score", "report", "promote"):
        if task not in tasks:
            raise SystemExit(f"{run}: task {task} wrote no executor_output.json (tasks that did: {sorted(tasks)})")
    splits = sorted(p.name for p in run.glob("scrape/articles/*.parquet"))
    if not splits:
        raise SystemExit(f"{run}/scrape/articles: no Parquet split written")
    summary = summarize_run(run.parent)  # score's scores.json, tune's best.json, promote's decision
    for task, output in sorted(tasks.items()):
        files = [p for p in (run / task).rglob("*") if p.is_file()]
        print(f"{task:<16} {len(files):>4} files {sum(p.stat().st_size for p in files) / 1e6:>8.2f} MB  executor output: {sorted(output)}")
    print(f"scrape splits: {splits}; promoted: {summary['promotion']['promoted']}; tuned: {sorted(summary['scores'])}")
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", type=Path, nargs="?")
    parser.add_argument("--check", type=Path, metavar="ROOT", help="only check what a run under ROOT wrote")
    parser.add_argument("--root", type=Path, help="pipeline root: every task's artifacts land here")
    parser.add_argument("--use", action="append", default=[], metavar="IMAGE=LOCAL", help="run IMAGE's tasks in LOCAL")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="set in every task")
    args = parser.parse_args()
    if args.check:
        return check(args.check) and None
    args.root.mkdir(parents=True, exist_ok=True)
    run(args.pipeline, args.root.resolve(), dict(u.split("=", 1) for u in args.use), dict(e.split("=", 1) for e in args.env))


if __name__ == "__main__":
    sys.exit(main())

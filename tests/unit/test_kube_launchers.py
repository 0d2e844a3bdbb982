"""What the Katib and TrainJob launchers share (resumo.kube), asserted of both against a Kubernetes API on 127.0.0.1."""

import json

import pytest

from resumo import katib, kube, trainjob
from resumo.components import TRAIN_IMAGE
from resumo.config import GpuConfig, load_config
from tests.servers import kube_api

PAIRS = "s3://resumo/pairs"
SETTINGS = ["tune.katib.namespace=team-a", "tune.katib.poll_s=0", "tune.katib.delete=true", "train.trainjob.namespace=team-a", "train.trainjob.poll_s=0", "train.trainjob.delete=true"]


def _katib(cfg):
    return "experiments", katib.render(cfg.tune, cfg.train, PAIRS, target=kube.JobTarget(image=TRAIN_IMAGE, run_id="run-1")), lambda body, client: katib.launch(body, client, cfg.tune), katib.KatibError


def _trainjob(cfg):
    return "trainjobs", trainjob.render(cfg.train, PAIRS, kube.JobTarget(GpuConfig(count=8), TRAIN_IMAGE, "run-1")), lambda body, client: trainjob.launch(body, client, cfg.train), trainjob.TrainJobError


@pytest.mark.parametrize("owner", ["run-0", None], ids=["another-run", "no-run"])
@pytest.mark.parametrize("launcher", [_katib, _trainjob], ids=["katib", "trainjob"])
def test_neither_launcher_adopts_another_runs_object_on_a_409(launcher, owner):
    # A name is a hash of the run id, so it is taken by another run's object only by accident
    # (another prefix's hash, a hand launch, an object from before run annotations): waiting on
    # it would hand on another run's model. Katib refused it; TrainJob used to adopt it.
    plural, body, launch, error = launcher(load_config("full", SETTINGS))
    other = json.loads(json.dumps(body))
    if owner is None:
        del other["metadata"]["annotations"]
    else:
        other["metadata"]["annotations"][kube.RUN_ID_ANNOTATION] = owner
    with kube_api.KubeAPI("succeeded") as api:
        assert api.create(plural, "team-a", other)[0] == 201
        with pytest.raises(error, match=rf"cannot create \w+ team-a/{body['metadata']['name']}: an? \w+ of that name belongs to run {owner!r}, not 'run-1'; delete it, or set \S+name_prefix"):
            launch(body, api.client())
        # One create refused, one read of the owner; no wait, and the other run's object is left alone (not deleted, though delete is set).
        assert [m for m, *_ in api.requests] == ["POST", "GET"]
        assert list(api.objects[plural].values())[0]["metadata"].get("annotations") == other["metadata"].get("annotations")

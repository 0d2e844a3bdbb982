"""KFP components: each is a few lines that call one function in `resumo`.

Installed as `resumo.components`. The images they run in are named in
resumo.images (re-exported here for the components).
"""

from resumo.images import CPU_IMAGE, IMAGES, TRAIN_IMAGE, VERSION, VLLM_IMAGE

__all__ = ["CPU_IMAGE", "IMAGES", "TRAIN_IMAGE", "VERSION", "VLLM_IMAGE", "path_of"]


def path_of(artifact) -> str | None:
    """The local path of an optional input artifact; None when the pipeline gave none (so a component does not branch)."""
    return artifact.path if artifact is not None else None

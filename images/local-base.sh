#!/usr/bin/env bash
# A stand-in for python:3.11.14-slim-bookworm where Docker Hub is out of reach: Debian
# bookworm from Debian's archive (debootstrap), with Debian's Python 3.11 and pip,
# committed as a local image that the Dockerfiles take through `--build-arg BASE=`.
#   BUILDAH="buildah --storage-driver vfs" images/local-base.sh localhost/resumo-base:bookworm
set -euo pipefail
image=$1
read -r -a buildah <<<"${BUILDAH:-buildah}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# minbase: apt, dpkg and the required packages (passwd, for useradd); python3-pip brings setuptools.
debootstrap --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
    bookworm "$work/rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" \
    || { tail -n 30 "$work/debootstrap.log"; exit 1; }
# python:*-slim lets root pip install into its Python; Debian marks its own externally managed (PEP 668).
rm "$work"/rootfs/usr/lib/python3.*/EXTERNALLY-MANAGED
rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

container=$("${buildah[@]}" from scratch)
"${buildah[@]}" add --quiet "$container" "$work/rootfs.tar" /
"${buildah[@]}" config --env LANG=C.UTF-8 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd python3 "$container"
"${buildah[@]}" commit --quiet --rm "$container" "$image" >/dev/null
echo "$image: $(chroot "$work/rootfs" python --version), $(chroot "$work/rootfs" pip --version | cut -d' ' -f1-2)"

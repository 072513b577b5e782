#!/usr/bin/env bash
# Builds the byoi container with podman and checks that `byoi --help` inside it is byoi's help,
# the same text the checkout prints. Exit 0 only then. Runs in CI (test/features/container.test.ts).
# Caching, since vfs storage copies whole layers and is slow: the base image is made locally once
# (no registry is reachable) and kept in podman's storage; the image is tagged with a hash of its
# build context, so an unchanged agent is not rebuilt, and a changed one reuses the apt layer.
set -euo pipefail
cd "$(dirname "$0")/.."

# One run at a time on a machine: a run removes the images of earlier runs, which another run
# (another checkout) might be about to start.
exec 9>/run/lock/byoi-container-test.lock
flock 9

base=docker.io/library/debian:bookworm-slim
podman=(podman --storage-driver vfs --cgroup-manager cgroupfs)
# How a container runs on this machine (and CI's): crun refuses its hybrid cgroups, so runc; the
# runtime may not raise rlimits, so they are set at or below the current ones; no network needed.
run_flags=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none)

if ! "${podman[@]}" image exists "$base"; then
  echo "making $base with mmdebstrap (once per machine)" >&2
  mmdebstrap --quiet --variant=apt bookworm - | "${podman[@]}" import --quiet - "$base" >/dev/null
fi

context=build/container
bash scripts/container-context.sh "$context"
hash=$( (cat Dockerfile; cd "$context" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
tag=localhost/byoi:ctx-$hash

if ! "${podman[@]}" image exists "$tag"; then
  # chroot isolation: the default one fails on this machine's cgroups.
  "${podman[@]}" build --isolation chroot --pull=never -f Dockerfile -t "$tag" "$context" >build/container-build.log 2>&1 || {
    cat build/container-build.log >&2
    echo "podman build failed" >&2
    exit 1
  }
  # Older builds are full copies in vfs storage: drop them, keep this one.
  "${podman[@]}" images --filter reference=localhost/byoi --format '{{.Repository}}:{{.Tag}}' |
    grep -vxF "$tag" | xargs -r "${podman[@]}" rmi --force >/dev/null || true
  "${podman[@]}" image prune --force >/dev/null
fi

expected=$(npx --no-install byoi --help 2>&1)
actual=$("${podman[@]}" run --rm "${run_flags[@]}" "$tag" --help 2>&1) || {
  echo "byoi --help failed in the container $tag:" >&2
  echo "$actual" >&2
  exit 1
}
if [[ $actual != "$expected" ]]; then
  echo "byoi --help in the container $tag differs from the checkout's:" >&2
  diff <(echo "$expected") <(echo "$actual") >&2 || true
  exit 1
fi
echo "container ok: byoi --help runs in $tag"

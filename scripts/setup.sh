#!/usr/bin/env bash
# Installs what byoi, its tests and its demo need on Debian 12 (as root), then the npm dependencies.
# podman, runc and mmdebstrap build and run the container in scripts/container-test.sh; mmdebstrap
# and cpio build the VM guest and the PXE rescue system (scripts/vm, scripts/rescue).
# postgresql gives the server binaries tests start throwaway clusters with (test/helpers/postgres.ts);
# the machine's own cluster is never used.
# golang-go and golang-github-ovh-go-ovh-dev: OVH's Go client, driven against byoi serve by the tests.
# gcc and libc6-dev compile native/*.c (scripts/native.ts), into every bundle and, below, for source
# runs (tests, `node agent/byoi.ts`); liblzma-dev and libbz2-dev for the xz and bzip2 decoders,
# libdeflate-dev and libzstd-dev for the cluster decoders (libdeflate, and zstd.h: they call the
# zstd inside Node).
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  qemu-utils gdisk fdisk util-linux dosfstools mtools parted e2fsprogs xfsprogs btrfs-progs ntfs-3g
  cryptsetup-bin genisoimage
  curl xz-utils zstd bzip2 cpio cloud-init openssh-client
  podman runc mmdebstrap qemu-system-x86 ovmf
  postgresql
  chromium
  golang-go golang-github-ovh-go-ovh-dev
  strace efibootmgr
  gcc libc6-dev liblzma-dev libbz2-dev libdeflate-dev libzstd-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# cloud-init is here as an independent reader of config drives, not to configure this machine.
mkdir -p /etc/cloud && touch /etc/cloud/cloud-init.disabled

if [[ ! -x node_modules/.bin/node ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
for source in native/*.c; do
  built=build/native/$(basename "$source" .c).node
  if [[ ! -f $built ]] || [[ $source -nt $built ]]; then
    node_modules/.bin/node scripts/native.ts build/native
    break
  fi
done

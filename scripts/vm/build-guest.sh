#!/usr/bin/env bash
# Builds the QEMU test guest: Debian 12's kernel (vmlinux) and an initramfs holding the whole root
# (util-linux, gdisk, mdadm, lvm2, cryptsetup, udev...; the kernel modules those need, nothing else).
# The project itself is not in it: scripts/vm/run.ts shares the checkout into the guest with 9p.
#
# Two cached stages under $BYOI_VM_CACHE (default /var/cache/byoi-vm), each keyed by a hash of its
# recipe: base-<hash>/ (mmdebstrap's root and the kernel package: the slow part) and guest-<hash>/
# ({vmlinux,initrd.img}: modules picked, /init installed, packed). Prints the guest directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# No xfsprogs: it pulls in python3 and ICU (60 MB).
packages=(
  kmod udev util-linux mount fdisk gdisk parted dosfstools mtools e2fsprogs
  mdadm lvm2 dmsetup cryptsetup-bin procps coreutils busybox libstdc++6 cpio
  iproute2 curl
)
# Loaded at boot, with their dependencies: disks on every bus QEMU offers, 9p for the shares,
# the holders a rescue system meets (md, LVM, dm-crypt), filesystems the tests make, and a
# veth pair with netem delay for the long-link download benchmark (this machine's kernel has no netem).
modules=(
  virtio_pci virtio_blk virtio_scsi virtio_net sd_mod sr_mod nvme ahci
  9p 9pnet_virtio
  md_mod raid0 raid1 raid10 linear dm_mod dm_crypt dm_snapshot dm_mirror
  xts aes_generic sha256_generic cbc
  loop ext4 vfat nls_cp437 nls_ascii nls_utf8 isofs
  veth sch_netem
)

source "$here/debian-initramfs.sh"
base_key=$( (declare -f debian_base; printf '%s\n' "${packages[@]}") | initramfs_hash)
guest_key=$( (cat "$0" "$here/guest-init.sh" "$here/init-mounts.sh" "$here/debian-initramfs.sh"; printf '%s\n' "${modules[@]}") | initramfs_hash)
cache_root=${BYOI_VM_CACHE:-/var/cache/byoi-vm}
base=$cache_root/base-$base_key
out=$cache_root/guest-$guest_key
initramfs_lock "$cache_root"
if [[ -f $out/initrd.img && -f $out/vmlinux ]]; then
  touch -c "$out" "$base"
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache_root/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
[[ -d $base ]] || debian_base "$base" "$work" "${packages[@]}"

root=$work/root
cp -a "$base/root" "$root"
debian_kernel "$base" "$root" "$work" "${modules[@]}"

install -m 0755 "$here/guest-init.sh" "$root/init"
install -D -m 0644 "$here/init-mounts.sh" "$root/etc/byoi/init-mounts.sh"
cat >"$root/usr/local/bin/byoi" <<'SH'
#!/bin/sh
exec /byoi/node_modules/.bin/node /byoi/agent/byoi.ts "$@"
SH
chmod 0755 "$root/usr/local/bin/byoi"
ln -s /byoi/node_modules/.bin/node "$root/usr/local/bin/node"
echo byoi-guest >"$root/etc/hostname"
debian_slim_root "$root"
pack_cpio "$root" "$work/initrd.img"

mkdir -p "$out"
mv "$work/vmlinux" "$work/initrd.img" "$out/"
prune_cache "$cache_root" base guest
echo "$out"

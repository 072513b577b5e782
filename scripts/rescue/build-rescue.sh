#!/usr/bin/env bash
# Builds the PXE rescue system: Debian 12's kernel and an initramfs that starts `byoi agent` from
# the kernel command line (scripts/rescue/README.md tells how to boot it).
#
#   bash scripts/rescue/build-rescue.sh [--dist DIR] [--out DIR] [--api-ca FILE]
#
# --dist: the agent bundle (byoi.mjs and the chunk-*.mjs, worker-*.mjs and *.node beside
# it); default: `npm run build`'s dist/, rebuilt here. --out (default build/rescue) receives vmlinuz
# (what a PXE loader boots), vmlinux (the same kernel uncompressed, which QEMU boots faster) and
# initrd.img. Prints --out.
# --api-ca: the lab's CA (PEM), baked in as /etc/byoi/api-ca.pem: the agent verifies the API's
# certificate against it unless the kernel command line names another (byoi.ca=).
#
# initrd.img is two concatenated cpio archives, which the kernel unpacks one after the other:
# the system (Debian's tools from toolchain.txt, udev, busybox, the kernel modules, /init), cached
# under $BYOI_RESCUE_CACHE (default /var/cache/byoi-rescue) by a hash of its recipe and of the
# period of $BYOI_RESCUE_REFRESH_DAYS days it was built in (Debian's updates; a new period needs
# the network), and the agent
# (Node 24, the node@24 devDependency's binary, and the bundle), packed on every run: a code change
# does not rebuild the Debian part.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../.." && pwd)
source "$project/scripts/vm/debian-initramfs.sh"

dist= out=$project/build/rescue api_ca=
while (($#)); do
  case $1 in
    --api-ca) api_ca=$(realpath "$2"); shift 2 ;;
    --dist) dist=$(realpath "$2"); shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    *) echo "usage: $0 [--dist DIR] [--out DIR] [--api-ca FILE]" >&2; exit 2 ;;
  esac
done

mapfile -t toolchain < <(sed 's/#.*//; /^[[:space:]]*$/d; s/[[:space:]]//g' "$here/toolchain.txt")
# busybox: udhcpc (DHCP), ip, and reboot -f; procps: ps and free for the operator; cpio: packing.
packages=("${toolchain[@]}" busybox procps cpio)
# Shipped with their dependencies. Drivers: disk controllers and NICs of QEMU and of common servers
# (drivers needing non-free firmware are left out), loaded at boot only for the hardware present.
drivers=(
  virtio_pci virtio_blk virtio_scsi virtio_net nvme ahci ata_piix
  megaraid_sas mpt3sas smartpqi hpsa aacraid
  e1000 e1000e igb ixgbe i40e ice bnxt_en mlx5_core tg3 r8169
)
# Always loaded: SCSI disks (SATA and SAS disks appear late, after their controller), the holders
# a rescue system meets (md, LVM, dm-crypt), the filesystems an operator may mount.
always=(
  sd_mod md_mod raid0 raid1 raid10 raid456 linear dm_mod dm_crypt dm_snapshot dm_mirror
  xts aes_generic sha256_generic cbc
  loop ext4 xfs vfat nls_cp437 nls_ascii nls_utf8 efivarfs
)

cache_root=${BYOI_RESCUE_CACHE:-/var/cache/byoi-rescue}
# The rescue system parses what the network sends (images, with liblzma and libbz2 among others):
# Debian's security updates reach it within this many days, the base being keyed by the period too.
refresh_days=${BYOI_RESCUE_REFRESH_DAYS:-7}
[[ $refresh_days =~ ^[1-9][0-9]{0,4}$ ]] || { echo "BYOI_RESCUE_REFRESH_DAYS must be a whole number of days (1-99999)" >&2; exit 2; }
period=$(($(date +%s) / (refresh_days * 86400)))
base_key=$( (declare -f debian_base; printf '%s\n' "${packages[@]}" "$refresh_days:$period") | initramfs_hash)
# The system is made from the base: a new base makes a new system.
system_key=$( (cat "$0" "$here/init.sh" "$project/scripts/vm/init-mounts.sh" "$here/udhcpc.script" "$project/scripts/vm/debian-initramfs.sh"; printf '%s\n' "$base_key" "${drivers[@]}" "${always[@]}") | initramfs_hash)
base=$cache_root/base-$base_key
system=$cache_root/system-$system_key

# The agent first: a broken bundle or Node fails fast, before minutes of Debian.
node_binary=$(readlink -f "$project/node_modules/node/bin/node")
[[ -x $node_binary ]] || { echo "no Node binary at node_modules/node/bin/node: run scripts/setup.sh" >&2; exit 1; }
"$node_binary" --version | grep -q '^v24\.' || { echo "$node_binary is not Node 24" >&2; exit 1; }
if [[ -z $dist ]]; then
  (cd "$project" && npm run --silent build >&2)
  dist=$project/dist
fi
[[ -f $dist/byoi.mjs ]] || { echo "no byoi.mjs in $dist" >&2; exit 1; }

initramfs_lock "$cache_root"
if [[ ! -f $system/system.cpio ]]; then
  work=$(mktemp -d "$cache_root/.build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  [[ -d $base ]] || debian_base "$base" "$work" "${packages[@]}"
  root=$work/root
  cp -a "$base/root" "$root"
  debian_kernel "$base" "$root" "$work" "${drivers[@]}" "${always[@]}"
  printf '%s\n' "${always[@]}" >"$root/etc/byoi-modules"

  install -m 0755 "$here/init.sh" "$root/init"
  install -D -m 0644 "$project/scripts/vm/init-mounts.sh" "$root/etc/byoi/init-mounts.sh"
  install -D -m 0755 "$here/udhcpc.script" "$root/etc/byoi/udhcpc.script"
  cat >"$root/usr/local/bin/byoi" <<'SH'
#!/bin/sh
exec /usr/local/bin/node /usr/local/lib/byoi/byoi.mjs "$@"
SH
  chmod 0755 "$root/usr/local/bin/byoi"
  # lib/system/reboot.ts falls back to `reboot -f` when systemctl is missing: busybox's reboots at once.
  ln -s /bin/busybox "$root/usr/local/sbin/reboot"
  echo byoi-rescue >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  debian_slim_root "$root"
  # xfsprogs' python3 serves only xfs_scrub_all, and ICU only xfs_scrub: 60 MB the agent never uses.
  rm -rf "$root"/usr/sbin/xfs_scrub* "$root"/usr/lib/python3* "$root"/usr/bin/python3* \
    "$root"/usr/lib/x86_64-linux-gnu/libicu* "$root"/usr/share/icu "$root"/usr/lib/x86_64-linux-gnu/libpython3*
  # Every program left must still find its libraries.
  missing=$(chroot "$root" sh -c 'for f in /usr/bin/* /usr/sbin/*; do [ -f "$f" ] && ldd "$f" 2>/dev/null | grep -q "not found" && echo "$f"; done' || true)
  [[ -z $missing ]] || { echo "programs without their libraries: $missing" >&2; exit 1; }
  pack_cpio "$root" "$work/system.cpio"
  mkdir -p "$work/system"
  mv "$work/vmlinuz" "$work/vmlinux" "$work/system.cpio" "$work/system/"
  mv "$work/system" "$system"
  rm -rf "$work"
  touch -c "$base" # in use: not pruned, however long ago its period's build was
  prune_cache "$cache_root" base system
fi
touch -c "$system" "$base"
# The bundle's native modules must find their libraries in the system: without them the agent
# would fall back, silently, to the slower bundled xz and bzip2 decoders.
listing=$(cpio -t --quiet <"$system/system.cpio")
for lib in $(readelf -d "$dist"/*.node | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u); do
  grep -q "/$lib\$" <<<"$listing" || { echo "the rescue system lacks $lib, which $dist/*.node need" >&2; exit 1; }
done

# The agent archive: only new files under /usr/local, whose directories the system archive already
# has (an archive's directory entry would reset an existing directory's mode).
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/usr/local/lib/byoi" "$stage/usr/local/bin"
cp "$node_binary" "$stage/usr/local/bin/node"
cp "$dist"/*.mjs "$dist"/*.node "$stage/usr/local/lib/byoi/"
chmod -R u=rwX,go=rX "$stage/usr"
baked=()
if [[ -n $api_ca ]]; then
  install -D -m 0644 "$api_ca" "$stage/etc/byoi/api-ca.pem"
  baked=(etc/byoi/api-ca.pem)
fi
mkdir -p "$out"
cp "$system/vmlinuz" "$system/vmlinux" "$out/"
cp "$system/system.cpio" "$out/initrd.img"
(cd "$stage" && find usr/local/lib/byoi usr/local/bin/node "${baked[@]}" | LC_ALL=C sort |
  cpio --create --format=newc --owner=0:0 --quiet) >>"$out/initrd.img"
echo "$out"

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

hash() { sha256sum | cut -c1-16; }
base_recipe=$(sed -n '/^# base recipe: begin/,/^# base recipe: end/p' "$0"; printf '%s\n' "${packages[@]}")
base_key=$(hash <<<"$base_recipe")
guest_key=$( (cat "$0" "$here/guest-init.sh"; printf '%s\n' "${modules[@]}") | hash)
cache_root=${BYOI_VM_CACHE:-/var/cache/byoi-vm}
base=$cache_root/base-$base_key
out=$cache_root/guest-$guest_key
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9 # one build at a time; a run that waited then finds the result in the cache
if [[ -f $out/initrd.img && -f $out/vmlinux ]]; then
  touch -c "$out" "$base"
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache_root/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# base recipe: begin
if [[ ! -d $base ]]; then
  excludes=()
  for dir in doc man info locale lintian zoneinfo bash-completion; do
    excludes+=(--dpkgopt="path-exclude=/usr/share/$dir/*")
  done
  mkdir -p "$work/base/debs"
  # The kernel package is fetched with the chroot's apt configuration but unpacked by hand:
  # installing it would pull initramfs-tools and build an initramfs we do not use.
  mmdebstrap --quiet --variant=essential --include="$(IFS=,; echo "${packages[*]}")" "${excludes[@]}" \
    --customize-hook="cd '$work/base/debs' && APT_CONFIG=\$MMDEBSTRAP_APT_CONFIG apt-get download -q \
      \$(APT_CONFIG=\$MMDEBSTRAP_APT_CONFIG apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)/\1/p')" \
    bookworm "$work/base/root" >&2
  rm -rf "$work"/base/root/var/cache/apt/* "$work"/base/root/var/lib/apt/lists/* "$work"/base/root/var/log/*
  mv "$work/base" "$base"
fi
# base recipe: end

root=$work/root
cp -a "$base/root" "$root"

# The chroot's kmod resolves module dependencies (the host may have none).
kernel=$root/var/tmp/kernel
dpkg-deb -x "$base"/debs/linux-image-*.deb "$kernel"
kver=$(ls "$kernel/lib/modules")
chroot "$root" depmod -b /var/tmp/kernel "$kver"
# QEMU boots the uncompressed ELF kernel through its PVH entry point: no firmware, no self-
# decompression (about 8 s saved under TCG). Debian compresses it with xz.
offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$kernel/boot/vmlinuz-$kver" | head -1 | cut -d: -f1)
tail -c +$((offset + 1)) "$kernel/boot/vmlinuz-$kver" | xz -dcq >"$work/vmlinux" 2>/dev/null || true
[[ $(head -c 4 "$work/vmlinux") == $'\x7fELF' ]] || { echo "cannot extract the ELF kernel" >&2; exit 1; }

# Copy only the listed modules and what they depend on; built-in ones need nothing.
mkdir -p "$root/lib/modules/$kver"
cp "$kernel/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/"
for m in "${modules[@]}"; do
  chroot "$root" modprobe -d /var/tmp/kernel -S "$kver" --show-depends "$m"
done | awk '$1 == "insmod" { print $2 }' | sort -u | while read -r ko; do
  rel=${ko#/var/tmp/kernel/}
  mkdir -p "$root/$(dirname "$rel")"
  cp "$kernel/$rel" "$root/$rel"
done
rm -rf "$kernel"
chroot "$root" depmod "$kver"
printf '%s\n' "${modules[@]}" >"$root/etc/byoi-modules"

install -m 0755 "$here/guest-init.sh" "$root/init"
cat >"$root/usr/local/bin/byoi" <<'SH'
#!/bin/sh
exec /byoi/node_modules/.bin/node /byoi/agent/byoi.ts "$@"
SH
chmod 0755 "$root/usr/local/bin/byoi"
ln -s /byoi/node_modules/.bin/node "$root/usr/local/bin/node"
echo byoi-guest >"$root/etc/hostname"
# Not needed at run time: udev's hardware database (vendor and model names), perl (usrmerge's
# dependency), package databases.
rm -rf "$root"/boot/* "$root"/usr/lib/udev/hwdb.d "$root"/usr/lib/udev/hwdb.bin \
  "$root"/usr/share/perl "$root"/usr/share/perl5 "$root"/usr/lib/x86_64-linux-gnu/perl* \
  "$root"/usr/lib/x86_64-linux-gnu/libperl.so* "$root"/usr/bin/perl* \
  "$root"/var/lib/dpkg "$root"/var/cache/debconf "$root"/usr/share/i18n
# Of iconv's converters, mtools needs only the DOS code pages.
find "$root"/usr/lib/x86_64-linux-gnu/gconv -name '*.so' ! -name IBM437.so ! -name IBM850.so -delete

# Packed with the guest's own cpio, uncompressed: decompressing under TCG costs more (2-3 s for
# zstd or lz4) than the kernel's copy of the larger file.
chroot "$root" sh -c 'cd / && find . -xdev -print0 | cpio --null --create --format=newc --quiet' >"$work/initrd.img"

mkdir -p "$out"
mv "$work/vmlinux" "$work/initrd.img" "$out/"
# Guests and bases of other recipes (other branches, older commits) unused for two weeks, and
# builds that were killed.
find "$cache_root" -mindepth 1 -maxdepth 1 \( -name 'base-*' -o -name 'guest-*' \) -mtime +14 -exec rm -rf {} +
find "$cache_root" -mindepth 1 -maxdepth 1 -name '.build.*' -mtime +1 -exec rm -rf {} +
echo "$out"

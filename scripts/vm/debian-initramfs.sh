# Sourced by scripts/vm/build-guest.sh (the QEMU test harness) and scripts/rescue/build-rescue.sh
# (the PXE rescue system): both turn Debian 12 packages and Debian's kernel into a kernel and an
# initramfs holding the whole root, built in cached stages keyed by hashes of their recipes.

initramfs_hash() { sha256sum | cut -c1-16; }

# Takes the cache's lock (one build at a time per cache; a run that waited then finds the result).
initramfs_lock() {
  mkdir -p "$1"
  exec 9>"$1/.lock"
  flock 9
}

# The slow part, cached in DIR: mmdebstrap's root (DIR/root) and the kernel package (DIR/debs).
# Its cache key is `declare -f debian_base` plus the package list (the rescue system's also has a
# refresh period: scripts/rescue/build-rescue.sh).
debian_base() {
  local dir=$1 work=$2
  shift 2
  local excludes=() d
  for d in doc man info locale lintian zoneinfo bash-completion; do
    excludes+=(--dpkgopt="path-exclude=/usr/share/$d/*")
  done
  mkdir -p "$work/base/debs"
  # The kernel package is fetched with the chroot's apt configuration but unpacked by hand:
  # installing it would pull initramfs-tools and build an initramfs we do not use.
  mmdebstrap --quiet --variant=essential --include="$(IFS=,; echo "$*")" "${excludes[@]}" \
    --customize-hook="cd '$work/base/debs' && APT_CONFIG=\$MMDEBSTRAP_APT_CONFIG apt-get download -q \
      \$(APT_CONFIG=\$MMDEBSTRAP_APT_CONFIG apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)/\1/p')" \
    bookworm "$work/base/root" >&2
  rm -rf "$work"/base/root/var/cache/apt/* "$work"/base/root/var/lib/apt/lists/* "$work"/base/root/var/log/*
  mv "$work/base" "$dir"
}

# Unpacks Debian's kernel from BASE into ROOT with only the listed modules (and what they depend
# on; built-in ones need nothing), writes them to ROOT/etc/byoi-modules, and leaves OUT/vmlinuz
# (the compressed bzImage a PXE loader boots) and OUT/vmlinux (the ELF kernel QEMU boots directly
# through its PVH entry point: no self-decompression, about 8 s saved under TCG).
debian_kernel() {
  local base=$1 root=$2 out=$3
  shift 3
  # The chroot's kmod resolves module dependencies (the host may have none).
  local kernel=$root/var/tmp/kernel kver offset ko rel
  dpkg-deb -x "$base"/debs/linux-image-*.deb "$kernel"
  kver=$(ls "$kernel/lib/modules")
  chroot "$root" depmod -b /var/tmp/kernel "$kver"
  cp "$kernel/boot/vmlinuz-$kver" "$out/vmlinuz"
  # Debian compresses the kernel with xz.
  offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$kernel/boot/vmlinuz-$kver" | head -1 | cut -d: -f1)
  tail -c +$((offset + 1)) "$kernel/boot/vmlinuz-$kver" | xz -dcq >"$out/vmlinux" 2>/dev/null || true
  [[ $(head -c 4 "$out/vmlinux") == $'\x7fELF' ]] || { echo "cannot extract the ELF kernel" >&2; return 1; }

  mkdir -p "$root/lib/modules/$kver"
  cp "$kernel/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/"
  for m in "$@"; do
    chroot "$root" modprobe -d /var/tmp/kernel -S "$kver" --show-depends "$m"
  done | awk '$1 == "insmod" { print $2 }' | sort -u | while read -r ko; do
    rel=${ko#/var/tmp/kernel/}
    mkdir -p "$root/$(dirname "$rel")"
    cp "$kernel/$rel" "$root/$rel"
  done
  rm -rf "$kernel"
  chroot "$root" depmod "$kver"
  printf '%s\n' "$@" >"$root/etc/byoi-modules"
}

# Drops what is not needed at run time: udev's hardware database (vendor and model names), perl
# (usrmerge's dependency), package databases, and of iconv's converters all but the DOS code pages
# mtools needs.
debian_slim_root() {
  local root=$1
  rm -rf "$root"/boot/* "$root"/usr/lib/udev/hwdb.d "$root"/usr/lib/udev/hwdb.bin \
    "$root"/usr/share/perl "$root"/usr/share/perl5 "$root"/usr/lib/x86_64-linux-gnu/perl* \
    "$root"/usr/lib/x86_64-linux-gnu/libperl.so* "$root"/usr/bin/perl* \
    "$root"/var/lib/dpkg "$root"/var/cache/debconf "$root"/usr/share/i18n
  find "$root"/usr/lib/x86_64-linux-gnu/gconv -name '*.so' ! -name IBM437.so ! -name IBM850.so -delete
}

# Packs ROOT with its own cpio (newc, what the kernel unpacks), uncompressed: decompressing under
# TCG costs more (2-3 s for zstd or lz4) than the kernel's copy of the larger file.
pack_cpio() {
  local root=$1 out=$2
  chroot "$root" sh -c 'cd / && find . -xdev -print0 | cpio --null --create --format=newc --quiet' >"$out"
}

# Entries of other recipes (other branches, older commits) unused for two weeks, and killed builds.
prune_cache() {
  local cache_root=$1
  shift
  local name
  for name in "$@"; do
    find "$cache_root" -mindepth 1 -maxdepth 1 -name "$name-*" -mtime +14 -exec rm -rf {} +
  done
  find "$cache_root" -mindepth 1 -maxdepth 1 -name '.build.*' -mtime +1 -exec rm -rf {} +
}

#!/usr/bin/env bash
# Builds the cloud image byoi's end-to-end test deploys: Debian 12 from its packages (mmdebstrap),
# the way distributions ship cloud images. GPT with a BIOS boot partition (legacy GRUB's core.img),
# an ESP (vfat, \EFI\BOOT\BOOTX64.EFI: the removable-media path, no NVRAM entry needed) and an ext4
# root; linux-image-amd64, cloud-init reading only ConfigDrive, openssh-server, the default user
# `debian`. Shipped as compressed qcow2.
#
# Nothing is mounted (this machine's kernel cannot mount vfat): the root is packed by
# `mkfs.ext4 -d`, the ESP filled with mtools, GRUB's images made with the chroot's grub-mkimage
# and written into place by hand (what grub-bios-setup does for a GPT disk with a BIOS boot
# partition).
#
# Cached in $BYOI_E2E_CACHE (default /var/cache/byoi-e2e) under a hash of this script; prints the
# path of the qcow2 image. Next to it: image.json (root UUID, default user, kernel version).
set -euo pipefail

packages=(
  linux-image-amd64 systemd-sysv udev kmod cloud-init openssh-server sudo ifupdown isc-dhcp-client
  grub-pc-bin grub-efi-amd64-bin initramfs-tools zstd
)
# Fixed identities: the image is reproducible in layout and its grub.cfg/fstab name them.
root_uuid=5b0e2d6c-0e1a-4c53-9b6e-b401e0000001
esp_serial=B401E001
disk_mib=1536
esp_mib=64
bios_mib=1

cache_root=${BYOI_E2E_CACHE:-/var/cache/byoi-e2e}
key=$( (cat "$0"; printf '%s\n' "${packages[@]}") | sha256sum | cut -c1-16)
out=$cache_root/cloud-image-$key
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9
if [[ -f $out/debian-12-byoi.qcow2 ]]; then
  touch -c "$out"
  echo "$out/debian-12-byoi.qcow2"
  exit 0
fi
work=$(mktemp -d "$cache_root/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

excludes=()
for dir in doc man info locale lintian bash-completion; do
  excludes+=(--dpkgopt="path-exclude=/usr/share/$dir/*")
done
# The kernel's postinst builds the initramfs (initramfs-tools); MODULES=most because the chroot
# cannot tell which drivers the target machine needs.
mmdebstrap --quiet --variant=minbase --aptopt='APT::Install-Recommends "false"' \
  --include="$(IFS=,; echo "${packages[*]}")" "${excludes[@]}" \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  bookworm "$root" >&2

kver=$(ls "$root/lib/modules")
echo byoi-image >"$root/etc/hostname"
cat >"$root/etc/fstab" <<FSTAB
UUID=$root_uuid / ext4 rw,discard,errors=remount-ro 0 1
UUID=${esp_serial:0:4}-${esp_serial:4:4} /boot/efi vfat umask=0077,nofail 0 1
FSTAB
mkdir -p "$root/boot/efi"
# Only the config drive: no probing of network metadata services that do not exist here.
cat >"$root/etc/cloud/cloud.cfg.d/90-byoi-datasource.cfg" <<'CFG'
datasource_list: [ ConfigDrive, None ]
CFG
cat >"$root/etc/network/interfaces" <<'ENI'
source /etc/network/interfaces.d/*
auto lo
iface lo inet loopback
ENI
# sshd's host keys are made at first boot by cloud-init, never shipped in an image: sshd starts
# after cloud-init's network stage has made them (Debian's unit is ssh.service, not sshd.service,
# which cloud-init.service orders itself before).
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
printf '[Unit]\nAfter=cloud-init.service\n' >"$root/etc/systemd/system/ssh.service.d/after-cloud-init.conf"
: >"$root/etc/machine-id"

# GRUB: modules under /boot/grub (as grub-install copies them), a grub.cfg booting the kernel on
# the serial console and the screen, and the two boot images, each with a small embedded config
# that finds the root by UUID.
cmdline="root=UUID=$root_uuid ro console=tty0 console=ttyS0,115200"
mkdir -p "$root/boot/grub"
cp -r "$root/usr/lib/grub/i386-pc" "$root/usr/lib/grub/x86_64-efi" "$root/boot/grub/"
cat >"$root/etc/default/grub.d/90-byoi.cfg" <<GRUBD
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUB_TIMEOUT=1
GRUBD
cat >"$root/boot/grub/grub.cfg" <<GRUBCFG
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=1
set default=0
insmod part_gpt
insmod ext2
search --no-floppy --fs-uuid --set=root $root_uuid
echo "byoi-image: GRUB \$grub_platform loaded grub.cfg"
menuentry 'Debian GNU/Linux 12 (byoi cloud image)' {
  linux /boot/vmlinuz-$kver $cmdline
  initrd /boot/initrd.img-$kver
}
GRUBCFG
cat >"$root/var/tmp/early.cfg" <<EARLY
search --no-floppy --fs-uuid --set=root $root_uuid
set prefix=(\$root)/boot/grub
EARLY
common_modules="part_gpt part_msdos ext2 search search_fs_uuid normal configfile echo linux serial terminal test"
chroot "$root" grub-mkimage -O i386-pc -c /var/tmp/early.cfg -p /boot/grub -o /var/tmp/core.img \
  biosdisk $common_modules
chroot "$root" grub-mkimage -O x86_64-efi -c /var/tmp/early.cfg -p /boot/grub -o /var/tmp/BOOTX64.EFI \
  $common_modules efi_gop all_video
mv "$root/var/tmp/core.img" "$root/var/tmp/BOOTX64.EFI" "$work/"
cp "$root/usr/lib/grub/i386-pc/boot.img" "$work/"
rm -f "$root/var/tmp/early.cfg"

# Partitions (MiB): 1 BIOS boot at 1, 2 ESP after it, 3 root up to the end minus the backup GPT.
disk=$work/disk.raw
truncate -s "${disk_mib}M" "$disk"
root_start=$((1 + bios_mib + esp_mib))
sgdisk -Z \
  -n 1:1M:+${bios_mib}M -t 1:EF02 -c 1:bios \
  -n 2:$((1 + bios_mib))M:+${esp_mib}M -t 2:EF00 -c 2:esp \
  -n 3:${root_start}M:0 -t 3:8304 -c 3:root \
  "$disk" >&2
root_end_sector=$(sgdisk -i 3 "$disk" | sed -n 's/^Last sector: \([0-9]*\).*/\1/p')
root_bytes=$(( (root_end_sector + 1) * 512 - root_start * 1024 * 1024 ))

mkfs.vfat -F 32 -S 512 -n ESP -i "$esp_serial" -C "$work/esp.vfat" $((esp_mib * 1024)) >&2
mmd -i "$work/esp.vfat" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.vfat" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI

truncate -s "$root_bytes" "$work/root.ext4"
mkfs.ext4 -q -F -L root -U "$root_uuid" -d "$root" "$work/root.ext4"

dd if="$work/esp.vfat" of="$disk" bs=1M seek=$((1 + bios_mib)) conv=notrunc status=none
dd if="$work/root.ext4" of="$disk" bs=1M seek=$root_start conv=notrunc status=none

# Legacy boot, as grub-bios-setup does it: boot.img's code (not the partition table) in sector 0,
# pointing at core.img in the BIOS boot partition; core.img's first sector (diskboot) carries a
# block list of the rest of it.
le64() { local v=$1 i; for i in 0 1 2 3 4 5 6 7; do printf "\\x$(printf %02x $((v % 256)))"; v=$((v / 256)); done; }
le16() { printf "\\x$(printf %02x $(($1 % 256)))\\x$(printf %02x $(($1 / 256)))"; }
core_lba=2048
core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
(( core_sectors <= bios_mib * 2048 )) || { echo "core.img does not fit the BIOS boot partition" >&2; exit 1; }
dd if="$work/boot.img" of="$disk" bs=1 count=440 conv=notrunc status=none
le64 $core_lba | dd of="$disk" bs=1 seek=$((0x5c)) conv=notrunc status=none
# A hard disk: skip boot.img's check for BIOSes passing a wrong drive number (two NOPs).
printf '\x90\x90' | dd of="$disk" bs=1 seek=$((0x66)) conv=notrunc status=none
cp "$work/core.img" "$work/core.patched"
# The block list entry sits at the end of diskboot's sector: start (8), length (2), segment (2).
{ le64 $((core_lba + 1)); le16 $((core_sectors - 1)); } | dd of="$work/core.patched" bs=1 seek=$((512 - 12)) conv=notrunc status=none
dd if="$work/core.patched" of="$disk" bs=512 seek=$core_lba conv=notrunc status=none

sgdisk -v "$disk" >&2
mkdir -p "$work/out"
qemu-img convert -c -f raw -O qcow2 "$disk" "$work/out/debian-12-byoi.qcow2"
cat >"$work/out/image.json" <<JSON
{"rootUuid": "$root_uuid", "defaultUser": "debian", "kernel": "$kver", "virtualSizeMiB": $disk_mib}
JSON
mv "$work/out" "$out"
find "$cache_root" -mindepth 1 -maxdepth 1 -name 'cloud-image-*' -mtime +14 -exec rm -rf {} +
echo "$out/debian-12-byoi.qcow2"

#!/bin/bash
# PID 1 of the test guest (the whole root lives in the initramfs). It brings up what a rescue
# system has (udev, /dev/disk/by-id, md/LVM/dm tools), mounts the project read-only at /byoi and the
# run's exchange directory at /job, runs /job/script.sh as root, prints its exit code between
# markers the host looks for, and powers off. Any failure here ends in a kernel panic, which the
# host's QEMU (-no-reboot, panic=-1) turns into an exit: the host never waits on a dead guest.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb

. /etc/byoi/init-mounts.sh
exec </dev/null >/dev/console 2>&1
# Keep kernel chatter (md resync, EXT4 mounts) out of the script's output.
echo 1 >/proc/sys/kernel/printk

nonce= net=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    byoi.nonce=*) nonce=${arg#byoi.nonce=} ;;
    byoi.net=1) net=1 ;;
  esac
done

# One modprobe for all: each process start costs a lot under TCG.
modprobe -a $(cat /etc/byoi-modules) || echo "guest: some kernel modules did not load"

/lib/systemd/systemd-udevd --daemon --resolve-names=never
# Only block devices: their events make /dev/disk/by-id and run md's incremental assembly, as in
# a rescue system. Modules are already loaded, so no other subsystem needs replaying (and it is slow).
udevadm trigger --type=devices --action=add --subsystem-match=block
udevadm settle --timeout=60

mkdir -p /byoi /job
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro byoi /byoi
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 job /job

if [ -n "$net" ]; then
  busybox ip link set lo up
  busybox ip link set eth0 up
  busybox ip addr add 10.0.2.15/24 dev eth0
  busybox ip route add default via 10.0.2.2
fi

echo "byoi-vm:$nonce:begin"
# Through a pipe, not the console's tty: tools print what they print in CI (no progress bars,
# no columns), and stdout and stderr stay in order.
bash /job/.byoi-vm-script.sh 2>&1 | cat
code=${PIPESTATUS[0]}
echo "byoi-vm:$nonce:exit:$code"
sync
busybox poweroff -f
echo o >/proc/sysrq-trigger

#!/bin/bash
# PID 1 of the rescue system (the whole root lives in the initramfs). It brings up what the agent
# needs and nothing more: kernel modules, udev (/dev/disk/by-id; md arrays and LVM volume groups
# found on the disks are assembled, as the agent expects of a rescue system), the network by DHCP
# on every NIC, then `byoi agent`, which reads byoi.server=, byoi.service= and byoi.token= from
# the kernel command line, deploys, reports and reboots (`reboot -f`: there is no systemd here).
# If the agent ends without rebooting (a deployment error), the server stays in rescue with a
# shell on the console for a look.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=linux

. /etc/byoi/init-mounts.sh
exec </dev/console >/dev/console 2>&1
busybox hostname -F /etc/hostname
echo "rescue: byoi rescue system, kernel $(uname -r)"

# udev first, so the NICs and disks the modules bring up get their events (names, by-id links).
/lib/systemd/systemd-udevd --daemon --resolve-names=never
# Few modprobe runs, each loading many modules: every process start costs a lot under emulation.
# The holders and filesystems always; then drivers for the devices the buses announce (by
# modalias; a module shipped for other hardware is not loaded), in rounds, as a bus driver
# (virtio_pci, ahci) brings up devices of its own.
modprobe -a -b $(cat /etc/byoi-modules) || echo "rescue: some kernel modules did not load"
# Booted by UEFI: the firmware's variables, where the agent makes the deployed disk's boot entry.
[[ -d /sys/firmware/efi ]] && mount -t efivarfs efivarfs /sys/firmware/efi/efivars
for round in 1 2 3; do
  modprobe -a -b -q $(sort -u /sys/bus/*/devices/*/modalias) 2>/dev/null
done
udevadm trigger --type=devices --action=add --subsystem-match=block --subsystem-match=net
udevadm settle --timeout=60

busybox ip link set lo up
pids=()
for dev in /sys/class/net/*; do
  nic=${dev##*/}
  [ "$nic" = lo ] && continue
  # -n: give up after the tries (a NIC with no DHCP server behind it); -q: exit once leased.
  busybox udhcpc -i "$nic" -s /etc/byoi/udhcpc.script -t 5 -T 2 -A 1 -n -q >/dev/null 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
busybox ip -4 -o addr show scope global | grep -q . || echo "rescue: no NIC got an address by DHCP"

cmdline=$(cat /proc/cmdline)
if [[ " $cmdline " == *" byoi.server="* ]]; then
  for (( attempt = 1; ; attempt++ )); do
    byoi agent --cmdline /proc/cmdline
    code=$?
    # Only a crash (killed by a signal) starts it again; it then takes the same job.
    ((code > 128)) || break
    echo "rescue: byoi agent was killed (status $code); starting it again in 5 s"
    sleep 5
  done
  echo "rescue: byoi agent ended with status $code without rebooting; staying in rescue"
else
  echo "rescue: no byoi.server= on the kernel command line; not starting byoi agent"
fi

# The operator's shell on the console's terminal (the last console= of the command line).
# Respawned: PID 1 must never exit.
tty=$(awk '{ print $NF }' /sys/class/tty/console/active)
while :; do
  setsid -c bash -l <>"/dev/${tty:-console}" >&0 2>&1
  sleep 1
done

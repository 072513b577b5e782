# The early mounts of an initramfs /init, sourced by the test guest's (scripts/vm/guest-init.sh) and
# the rescue system's (scripts/rescue/init.sh); their builders install it as /etc/byoi/init-mounts.sh
# and hash it into their cache keys. The kernel's filesystems, then the runtime directories udev,
# md, LVM and cryptsetup expect.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 run /run
mount -t tmpfs tmpfs /tmp
mkdir -p /run/lock /run/lvm /run/mdadm /run/cryptsetup

# The byoi agent with the toolchain a rescue image needs: Debian 12, Node 24, and the system
# tools the agent calls. Build it from the staged context, not from the checkout:
#   bash scripts/container-context.sh build/container
#   podman build -f Dockerfile -t byoi build/container      (or docker build, the same way)
# The context holds dist/ (npm run build) and node (the Node 24 binary of the node@24 devDependency):
# Debian 12 has no Node 24.
FROM docker.io/library/debian:bookworm-slim

# The tools the agent calls. gdisk: sgdisk (GPT verify, backup header); util-linux: partx,
# blockdev, blkid, blkdiscard, wipefs, lsblk; mount: umount, swapoff; fdisk (sfdisk), parted:
# partition tables; dosfstools, mtools: the FAT config drive; e2fsprogs: ext4 probes; kmod, udev:
# modules and device nodes (udevadm); lvm2 (lvs, vgchange, dmsetup), cryptsetup-bin, mdadm:
# releasing a disk that LVM, dm-crypt or md still hold; ca-certificates: https downloads;
# libstdc++6: Node's one shared library beyond glibc.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gdisk util-linux mount fdisk parted dosfstools mtools e2fsprogs kmod udev \
      lvm2 cryptsetup-bin mdadm ca-certificates libstdc++6 \
 && rm -rf /var/lib/apt/lists/*

COPY node /usr/local/bin/node
COPY dist/ /usr/local/lib/byoi/
RUN printf '#!/bin/sh\nexec /usr/local/bin/node /usr/local/lib/byoi/byoi.mjs "$@"\n' > /usr/local/bin/byoi \
 && chmod 0755 /usr/local/bin/byoi \
 && node --version && byoi --help >/dev/null

ENTRYPOINT ["byoi"]

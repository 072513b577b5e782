#!/usr/bin/env bash
# The main job, end to end, without touching a real disk: a small GPT disk image (an EFI partition
# and an ext4 root holding a file) made with qemu-img/sgdisk/mkfs, compressed to qcow2 by qemu-img,
# served over HTTP on 127.0.0.1, deployed by `byoi deploy` onto a loop device over a sparse file,
# then checked: the GPT, the status file, and the bytes against `qemu-img convert` of the same image.
# Run as root on Debian 12: bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

node=$PWD/node_modules/.bin/node   # Node 24; run directly so that $! is the server itself
work=$(mktemp -d /tmp/byoi-demo.XXXXXX)
server_pid=''
loop=''
cleanup() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
  if [[ -n $loop ]]; then losetup --detach "$loop" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n==> %s\n' "$*"; }

step "Making a 64 MiB GPT disk image: an EFI partition (FAT) and an ext4 root holding a file"
mib=$((1024 * 1024))
qemu-img create -q -f raw "$work/disk.raw" 64M
sgdisk --clear \
  --new=1:1M:+8M --typecode=1:ef00 --change-name=1:EFI \
  --new=2:0:+40M --typecode=2:8300 --change-name=2:root "$work/disk.raw" >/dev/null
sgdisk -p "$work/disk.raw" | sed -n '/^Number/,$p'
first_sector() { sgdisk -i "$2" "$1" | awk '/^First sector:/ {print $3}'; }
last_sector() { sgdisk -i "$2" "$1" | awk '/^Last sector:/ {print $3}'; }
efi_start=$(first_sector "$work/disk.raw" 1)
root_start=$(first_sector "$work/disk.raw" 2)
root_sectors=$(($(last_sector "$work/disk.raw" 2) - root_start + 1))
mkfs.fat --offset="$efi_start" "$work/disk.raw" $((8 * 1024)) >/dev/null 2>&1
mkdir -p "$work/rootfs/etc"
echo 'Hello from an image deployed by byoi.' >"$work/rootfs/hello.txt"
echo demo >"$work/rootfs/etc/hostname"
mkfs.ext4 -q -F -L root -d "$work/rootfs" "$work/root.ext4" $((root_sectors / 2))k >/dev/null
dd if="$work/root.ext4" of="$work/disk.raw" bs=512 seek="$root_start" conv=notrunc,sparse status=none

step "Compressing it to qcow2 with qemu-img"
qemu-img convert -c -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
qemu-img info "$work/disk.qcow2" | grep -E '^(file format|virtual size|disk size|cluster_size)'
checksum=$(sha256sum "$work/disk.qcow2" | cut -d' ' -f1)
echo "sha256: $checksum"

step "Serving it on 127.0.0.1 from a throwaway HTTP server"
"$node" -e '
  const http = require("node:http"), fs = require("node:fs");
  const [file, portFile] = process.argv.slice(1);
  const server = http.createServer((req, res) => {
    if (req.url !== "/disk.qcow2") { res.writeHead(404).end(); return; }
    res.writeHead(200, { "content-length": fs.statSync(file).size, "content-type": "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  server.listen(0, "127.0.0.1", () => fs.writeFileSync(portFile, String(server.address().port)));
' "$work/disk.qcow2" "$work/port" &
server_pid=$!
for _ in $(seq 100); do [[ -s $work/port ]] && break; sleep 0.1; done
[[ -s $work/port ]] || { echo "the HTTP server did not start" >&2; exit 1; }
url="http://127.0.0.1:$(cat "$work/port")/disk.qcow2"
echo "$url"

step "Attaching a loop device over a 128 MiB sparse file: the target disk, bigger than the image"
truncate -s 128M "$work/target.img"
loop=$(losetup --find --show "$work/target.img")
echo "$loop"

step "byoi deploy, with a config drive (its JSON log lines go to $work/deploy.log; shown here only if it fails)"
printf '#cloud-config\nruncmd:\n  - echo hello from byoi user data\n' >"$work/user-data"
set -x
npx --no-install byoi deploy --url "$url" --type qcow2 \
  --checksum "$checksum" --checksum-type sha256 \
  --hostname demo.byoi.example --user-data "$work/user-data" --user-metadata purpose=demo \
  --disk "$loop" --no-reboot --status-file "$work/status.json" 2>"$work/deploy.log" || {
  { set +x; } 2>/dev/null
  cat "$work/deploy.log" >&2
  exit 1
}
{ set +x; } 2>/dev/null
echo "deployed; the log's last line: $(tail -n 1 "$work/deploy.log")"

step "The disk's partition table (sgdisk -p, sgdisk -v)"
sgdisk -p "$loop" | sed -n '/^Disk \//p;/^Number/,$p'
sgdisk -v "$loop" | grep -v '^$'

step "The status file (pretty-printed)"
"$node" -e 'console.log(JSON.stringify(JSON.parse(require("node:fs").readFileSync(0, "utf8")), null, 2))' <"$work/status.json"

step "The bytes, against qemu-img's own conversion of the same qcow2"
qemu-img convert -O raw "$work/disk.qcow2" "$work/expected.raw"
size=$(stat -c %s "$work/expected.raw")
# Everything between the primary GPT (sectors 0-33) and the image's backup GPT (its last 33
# sectors) must be identical; the GPT headers themselves change when the backup header moves to
# the end of the bigger disk, and `sgdisk -v` above checks them.
gpt_head=$((34 * 512)) gpt_tail=$((33 * 512))
cmp --ignore-initial="$gpt_head" --bytes=$((size - gpt_head - gpt_tail)) "$work/expected.raw" "$loop"
echo "identical: bytes $gpt_head to $((size - gpt_tail)) of $loop equal qemu-img convert's output"

step "The config drive: the last partition, vfat labelled config-2, read with mtools"
drive_start=$(sfdisk --json "$loop" | "$node" -e '
  const t = JSON.parse(require("node:fs").readFileSync(0, "utf8")).partitiontable;
  const p = t.partitions.find((p) => p.name === "config-2");
  console.log(p.start * (t.sectorsize ?? 512));')
blkid -p -O "$drive_start" -o export "$loop" | grep -E '^(LABEL|TYPE)='
MTOOLS_SKIP_CHECK=1 mdir -/ -b -i "$loop@@$drive_start" ::openstack 2>/dev/null
echo "meta_data.json: $(MTOOLS_SKIP_CHECK=1 mtype -i "$loop@@$drive_start" ::openstack/latest/meta_data.json 2>/dev/null)"

step "The file inside the deployed ext4 partition"
dd if="$loop" of="$work/root.out" bs=512 skip="$root_start" count="$root_sectors" status=none
debugfs -R 'cat /hello.txt' "$work/root.out" 2>/dev/null

step "Done: no real disk was touched; $loop is detached and $work removed on exit"

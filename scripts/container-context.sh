#!/usr/bin/env bash
# Stages the container's build context into DIR (default build/container): the bundled agent
# (dist/, rebuilt here), the real Node 24 binary of the node@24 devDependency (not a symlink) and
# the Debian packages of the agent's tools (scripts/rescue/toolchain.txt, shared with the rescue system).
# Then: podman build -f Dockerfile DIR   (scripts/container-test.sh does it all).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build/container}

npm run --silent build >/dev/null
node_binary=$(readlink -f node_modules/node/bin/node)
[[ -x $node_binary ]] || { echo "no Node binary at node_modules/node/bin/node: run scripts/setup.sh" >&2; exit 1; }
"$node_binary" --version | grep -q '^v24\.' || { echo "$node_binary is not Node 24" >&2; exit 1; }

rm -rf "$dir"
mkdir -p "$dir"
cp -r dist "$dir/dist"
cp "$node_binary" "$dir/node"
cp scripts/rescue/toolchain.txt "$dir/toolchain.txt"

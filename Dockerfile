# The byoi agent with the toolchain a rescue image needs: Debian 12, Node 24, and the system
# tools the agent calls. Build it from the staged context, not from the checkout:
#   bash scripts/container-context.sh build/container
#   podman build -f Dockerfile -t byoi build/container      (or docker build, the same way)
# The context holds dist/ (npm run build), node (the Node 24 binary of the node@24 devDependency:
# Debian 12 has no Node 24) and toolchain.txt (the Debian packages of the tools the agent calls).
FROM docker.io/library/debian:bookworm-slim

# The tools the agent calls: scripts/rescue/toolchain.txt (staged into the context), the same list
# the PXE rescue system (scripts/rescue/build-rescue.sh) installs.
COPY toolchain.txt /tmp/toolchain.txt
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      $(sed 's/#.*//' /tmp/toolchain.txt) \
 && rm -rf /var/lib/apt/lists/* /tmp/toolchain.txt

COPY node /usr/local/bin/node
COPY dist/ /usr/local/lib/byoi/
RUN printf '#!/bin/sh\nexec /usr/local/bin/node /usr/local/lib/byoi/byoi.mjs "$@"\n' > /usr/local/bin/byoi \
 && chmod 0755 /usr/local/bin/byoi \
 && node --version && byoi --help >/dev/null

ENTRYPOINT ["byoi"]

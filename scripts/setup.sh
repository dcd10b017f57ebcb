#!/usr/bin/env bash
# `npm run setup`: everything a fresh Debian machine with Node.js 20, npm, python3, make and g++
# needs to build, test and run vmm. Debian packages first (tools the tests and the guest-image
# builder use), then pnpm at a pinned version, the workspace's dependencies (the lockfile is the
# truth: --frozen-lockfile), the native module and the TypeScript build.
set -euo pipefail
cd "$(dirname "$0")/.."

# binutils: tests assemble their tiny guests; lz4: unpacks Debian's kernel for loader tests (and
# the guest kernel's LZ4 bzImage); cpio: checks the initramfs writer; acpica-tools: iasl
# disassembles our ACPI tables in tests; make gcc libc6-dev bc bison flex perl libelf-dev xz-utils
# tar patch: building the default guest kernel from Debian's linux-source (packages/image);
# linux-source-6.1: its tarball in /usr/src, which the kernel patch check applies kernel/patches to
# (packages/image/test/kernel.test.ts) and the guest build then uses instead of downloading it;
# busybox-static: /bin/busybox, for the busybox checks of guest/ (packages/image/test/initramfs.test.ts).
# golang-go golang-github-digitalocean-go-qemu-dev: the go-qemu QMP client the control-plane e2e
# test builds offline (test/go-qmp); qemu-system-x86: bench:control runs QEMU's QMP beside ours.
PACKAGES="binutils lz4 cpio acpica-tools make gcc libc6-dev bc bison flex perl libelf-dev xz-utils tar patch linux-source-6.1 golang-go golang-github-digitalocean-go-qemu-dev qemu-system-x86"
# Debian's busybox (dynamic) also installs /bin/busybox and conflicts with busybox-static: either does.
[ -x /bin/busybox ] || PACKAGES="$PACKAGES busybox-static"
# test/e2e/docker.test.ts and bench/containers: Docker 20.10 (with containerd and runc) as the
# client of @vmm/oci, and script(1) (bsdutils) for `docker run -t` without a terminal.
PACKAGES="$PACKAGES docker.io bsdutils"
# @vmm/oci's container networking: iproute2's ip and tc (read the container's network namespace,
# redirect its veth to the guest's TAP); packages/oci/test/network-link.test.ts and
# test/e2e/container-network.test.ts make namespaces with them.
PACKAGES="$PACKAGES iproute2"
missing=""
for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "vmm setup: installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
  else
    echo "vmm setup: please install these Debian packages (as root):$missing" >&2
  fi
fi

npm install --global pnpm@12.21.0
pnpm install --frozen-lockfile
pnpm build
# npm's cache for the packed-package test, which installs --offline (scripts/warm-npm-cache.mjs).
node scripts/warm-npm-cache.mjs

# The default guest `pnpm start` boots and the end-to-end test runs (packages/image: a minimal
# kernel from Debian's linux-source-6.1 and a busybox initramfs; ~13 min on 2 cores the first
# time, then cached in ~/.cache/vmm). VMM_SKIP_GUEST_BUILD=1 leaves it to first use.
if [ "${VMM_SKIP_GUEST_BUILD:-}" != 1 ]; then
  node packages/image/dist/cli.js build
fi

#!/bin/sh
# qemu.sh NAME SECONDS [extra kernel args...]: the default guest under QEMU microvm with the
# command line of examples/micro.yaml (same kernel, initramfs, memory, one vCPU), for comparison
# with run.sh. Log in runs/NAME.log, wall-clock seconds and the exit status at the end.
cd "$(dirname "$0")/../.." || exit 1
name=$1; secs=$2; shift 2
dir=investigations/linux-on-pvm
paths=$(node packages/image/dist/cli.js path --json) || exit 1
kernel=$(echo "$paths" | node -e 'console.log(JSON.parse(require("fs").readFileSync(0)).vmlinux)')
initrd=$(echo "$paths" | node -e 'console.log(JSON.parse(require("fs").readFileSync(0)).initramfs)')
cmdline="console=ttyS0 loglevel=4 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd swiotlb=noforce cryptomgr.notests noxsave clearcpuid=cx16,popcnt $*"
start=$(date +%s.%N)
timeout "$secs" qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on -enable-kvm -cpu host,-arch-capabilities -m 256 -smp 1 \
  -nodefaults -no-user-config -nographic -serial stdio -no-reboot \
  -kernel "$kernel" -initrd "$initrd" -append "$cmdline" < /dev/null > $dir/runs/$name.log 2>&1
rc=$?
echo "[qemu.sh] exit $rc after $(echo "$(date +%s.%N) - $start" | bc) s wall; extra args: $*" >> $dir/runs/$name.log

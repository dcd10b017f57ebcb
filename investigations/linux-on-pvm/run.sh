#!/bin/sh
# run.sh NAME SECONDS [extra kernel args...]: boots minimal.yaml with the extra arguments appended,
# log in runs/NAME.log (wall-clock seconds and the exit status at the end).
cd "$(dirname "$0")/../.." || exit 1
name=$1; secs=$2; shift 2
dir=investigations/linux-on-pvm
# The default guest's current paths (packages/image's cache; its keys change with its inputs).
paths=$(node packages/image/dist/cli.js path --json) || exit 1
kernel=$(echo "$paths" | node -e 'console.log(JSON.parse(require("fs").readFileSync(0)).vmlinux)')
initrd=$(echo "$paths" | node -e 'console.log(JSON.parse(require("fs").readFileSync(0)).initramfs)')
sed "s|@EXTRA@|$*|; s|@KERNEL@|$kernel|; s|@INITRD@|$initrd|" $dir/minimal.yaml > $dir/runs/$name.yaml
start=$(date +%s.%N)
VMM_PROFILE_GUEST=$dir/runs/$name.profile VMM_TRACE_EMULATION=${VMM_TRACE_EMULATION:-1} timeout "$secs" node packages/core/dist/cli/main.js run $dir/runs/$name.yaml < /dev/null > $dir/runs/$name.log 2>&1
rc=$?
echo "[run.sh] exit $rc after $(echo "$(date +%s.%N) - $start" | bc) s wall; extra args: $*" >> $dir/runs/$name.log

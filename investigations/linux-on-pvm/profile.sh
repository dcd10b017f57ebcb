#!/bin/sh
# profile.sh PROFILE: the sampled guest rips (VMM_PROFILE_GUEST) per kernel function, from System.map.
map=$(dirname "$(node packages/image/dist/cli.js path --json | node -e 'console.log(JSON.parse(require("fs").readFileSync(0)).vmlinux)')")/System.map
grep -E ' [tTwW] ' "$map" | sort > /tmp/pvm-syms.txt
sort "$1" | join -a1 -j1 /dev/null - 2>/dev/null >/dev/null
python3 - "$1" /tmp/pvm-syms.txt <<'P'
import sys, bisect, collections
syms = [(int(l.split()[0], 16), l.split()[2]) for l in open(sys.argv[2])]
syms.sort(); addrs = [a for a, _ in syms]
per = collections.Counter()
for l in open(sys.argv[1]):
    rip, n = l.split(); rip = int(rip, 16); n = int(n)
    i = bisect.bisect_right(addrs, rip) - 1
    per['user' if rip == 0 else (syms[i][1] if i >= 0 else hex(rip))] += n
tot = sum(per.values())
for f, n in per.most_common(15): print(f"{n:6d} {100*n/tot:5.1f}% {f}")
P

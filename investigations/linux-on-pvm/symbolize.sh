#!/bin/sh
# symbolize.sh LOG: the 15 slowest initcalls of an initcall_debug log, named from System.map.
map=$(dirname "$(node packages/image/dist/cli.js path --json | node -e 'console.log(JSON.parse(require("fs").readFileSync(0)).vmlinux)')")/System.map
grep -a "returned" "$1" | awk '{for(i=1;i<=NF;i++){if($i=="initcall")a=$(i+1); if($i=="after")print $(i+1), a}}' | sort -n -r | head -15 |
while read us addr; do echo "$us us $(grep -m1 "^${addr#0x} " "$map" | awk '{print $3}')"; done

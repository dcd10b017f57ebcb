#!/bin/sh
# Builds and runs gd.c twice: without and with KVM_SET_GUEST_DEBUG (hardware breakpoint on LSTAR).
cd "$(dirname "$0")" || exit 1
as --64 -o /tmp/gd-g.o g.S && ld -m elf_x86_64 -Ttext=0x10000 --oformat=binary -e 0 -o g.bin /tmp/gd-g.o || exit 1
gcc -O1 -o /tmp/gd gd.c || exit 1
echo "== plain"; /tmp/gd
echo "== guestdebug"; /tmp/gd guestdebug

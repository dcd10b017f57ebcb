# A 16-bit real-mode guest for machine.yaml: prints a line on the debug console (port 0xe9), then
# asks debug-exit (port 0xf4) to end the VM with code 0. Only instructions the test hypervisor's
# interpreter knows are used, so the same binary runs there and on KVM.
# Rebuild guest.bin:  as --32 -o guest.o guest.S && objcopy -O binary guest.o guest.bin
    .code16
    .macro putc ch
    mov $\ch, %al
    out %al, $0xe9
    .endm

    putc 'h ; putc 'e ; putc 'l ; putc 'l ; putc 'o ; putc 0x20
    putc 'f ; putc 'r ; putc 'o ; putc 'm ; putc 0x20
    putc 't ; putc 'h ; putc 'e ; putc 0x20
    putc 'g ; putc 'u ; putc 'e ; putc 's ; putc 't ; putc 0x0a
    mov $0, %al
    out %al, $0xf4          # debug-exit, mode direct: exit code 0
    hlt                     # not reached

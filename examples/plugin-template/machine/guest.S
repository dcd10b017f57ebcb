# A 16-bit real-mode guest for machine.yaml: prints "hi" on the debug console (port 0xe9), reads
# the answer device (port 0xf0), prints the byte it got and writes it to debug-exit (port 0xf4),
# which ends the VM with that byte as exit code (42, '*', by default).
# Rebuild guest.bin:  as --32 -o guest.o guest.S && objcopy -O binary guest.o guest.bin
    .code16
    mov $'h, %al
    out %al, $0xe9
    mov $'i, %al
    out %al, $0xe9
    mov $0x0a, %al
    out %al, $0xe9
    in $0xf0, %al
    out %al, $0xe9
    out %al, $0xf4
    hlt

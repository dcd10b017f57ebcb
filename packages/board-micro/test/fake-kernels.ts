// Tiny stand-ins for Linux, built with binutils at test time, that check what a loader handed
// them and report on the serial port before resetting through the i8042: a 64-bit ELF (startup_64
// style: rsi = boot_params), a PVH ELF (ebx = hvm_start_info), and a bzImage around the 64-bit one.
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const dir = join(tmpdir(), 'vmm-fake-kernels')

function build(name: string, source: string, ldArgs: string[]): string {
  const key = createHash('sha256')
    .update(source + ldArgs.join(' '))
    .digest('hex')
    .slice(0, 12)
  const out = join(dir, `${name}-${key}`)
  if (!existsSync(out)) {
    mkdirSync(dir, { recursive: true })
    writeFileSync(`${out}.S`, `.intel_syntax noprefix\n${source}`)
    execFileSync('as', ['--64', '-o', `${out}.o`, `${out}.S`])
    execFileSync('ld', ['-m', 'elf_x86_64', ...ldArgs, '-o', out, `${out}.o`])
  }
  return out
}

// Prints "<tag> cmdline=<the command line> initrd=<its first 8 bytes>\n" from boot_params, then resets.
const report64 = (tag: string) => `
  mov dx, 0x3f8
  lea rbx, [rip + tag]
  call puts
  cmp dword ptr [rsi + 0x202], 0x53726448   # "HdrS": boot_params has a setup header
  jne reset
  lea rbx, [rip + cmdl]
  call puts
  mov ebx, [rsi + 0x228]                    # cmd_line_ptr
  call puts
  lea rbx, [rip + initrd]
  call puts
  mov ebx, [rsi + 0x218]                    # ramdisk_image
  mov ecx, 8
1: mov al, [rbx]
  out dx, al
  inc rbx
  loop 1b
  mov al, 10
  out dx, al
reset:
  mov al, 0xfe                              # i8042: pulse the reset line
  out 0x64, al
  hlt
puts:
  mov al, [rbx]
  test al, al
  jz 2f
  out dx, al
  inc rbx
  jmp puts
2: ret
tag: .asciz "${tag}"
cmdl: .asciz " cmdline="
initrd: .asciz " initrd="
`

/** An ELF vmlinux stand-in entered in 64-bit mode at 16 MiB. */
export function elf64Kernel(): string {
  return build('elf64', `.text\n.code64\n.globl _start\n_start:\n${report64('elf64')}`, [
    '-Ttext=0x1000000',
    '-e',
    '_start',
  ])
}

/** An ELF with a Xen PHYS32_ENTRY note: entered in 32-bit protected mode with ebx = hvm_start_info. */
export function pvhKernel(): string {
  return build(
    'pvh',
    `
.section .note.Xen, "a", @note
.align 4
.long 4, 4, 18
.asciz "Xen"
.long pvh_start
.text
.code32
.globl pvh_start
pvh_start:
  mov dx, 0x3f8
  lea esi, tag
  call puts
  cmp dword ptr [ebx], 0x336ec578           # hvm_start_info magic
  jne reset
  lea esi, cmdl
  call puts
  mov esi, [ebx + 24]                        # cmdline_paddr
  call puts
  lea esi, initrd
  call puts
  mov eax, [ebx + 16]                        # modlist_paddr -> first module's paddr
  mov esi, [eax]
  mov ecx, 8
1: mov al, [esi]
  out dx, al
  inc esi
  loop 1b
  lea esi, memmap
  call puts
  mov al, [ebx + 48]                         # memmap_entries, as a digit
  add al, 0x30
  out dx, al
  mov al, 10
  out dx, al
reset:
  mov al, 0xfe
  out 0x64, al
  hlt
puts:
  mov al, [esi]
  test al, al
  jz 2f
  out dx, al
  inc esi
  jmp puts
2: ret
tag: .asciz "pvh"
cmdl: .asciz " cmdline="
initrd: .asciz " initrd="
memmap: .asciz " memmap="
`,
    ['-Ttext=0x1000000', '-e', 'pvh_start'],
  )
}

/**
 * A bzImage: one setup sector with a boot-protocol 2.15 header, then a protected-mode kernel
 * linked at 1 MiB whose 64-bit entry sits at +0x200 (boot.rst "64-bit boot protocol").
 */
export function bzImageKernel(): string {
  const pm = build(
    'bz-pm',
    `.text\n.code64\n.org 0x200\n.globl startup_64\nstartup_64:\n${report64('bzimage')}`,
    ['-Ttext=0x100000', '-e', 'startup_64', '--oformat=binary'],
  )
  const out = `${pm}.syssize.bzImage`
  if (!existsSync(out)) {
    const raw = readFileSync(pm)
    // Padded to whole 16-byte paragraphs, as arch/x86/boot/tools/build.c does, for syssize.
    const kernel = Buffer.concat([raw, Buffer.alloc((16 - (raw.length % 16)) % 16)])
    const setup = new Uint8Array(2 * 512)
    const dv = new DataView(setup.buffer)
    dv.setUint8(0x1f1, 1) // setup_sects
    dv.setUint16(0x1fe, 0xaa55, true)
    dv.setUint32(0x1f4, kernel.length / 16, true) // syssize
    dv.setUint8(0x201, 0x66) // the header runs to 0x202 + 0x66
    dv.setUint32(0x202, 0x53726448, true) // "HdrS"
    dv.setUint16(0x206, 0x020f, true)
    dv.setUint8(0x211, 0x01) // LOADED_HIGH
    dv.setUint32(0x214, 0x100000, true) // code32_start
    dv.setUint32(0x22c, 0x7fffffff, true) // initrd_addr_max
    dv.setUint32(0x230, 0x200000, true) // kernel_alignment
    dv.setUint16(0x236, 0x1, true) // XLF_KERNEL_64
    dv.setUint32(0x238, 2047, true) // cmdline_size
    dv.setUint32(0x260, kernel.length + 0x1000, true) // init_size
    writeFileSync(out, Buffer.concat([setup, kernel]))
  }
  return out
}

/** A 64-bit ELF that prints `lines` on the serial port, then halts for good (interrupts off). */
function printingKernel(name: string, lines: readonly string[]): string {
  const text = lines.map((l) => `.ascii ${JSON.stringify(`${l}\n`)}`).join('\n')
  return build(
    name,
    `.text
.code64
.globl _start
_start:
  mov dx, 0x3f8
  lea rbx, [rip + msg]
1: mov al, [rbx]
  test al, al
  jz 2f
  out dx, al
  inc rbx
  jmp 1b
2: cli
  hlt
  jmp 2b
msg:
${text}
.byte 0
`,
    ['-Ttext=0x1000000', '-e', '_start'],
  )
}

/** Prints a Linux-style panic report (printk timestamps included), then halts. */
export function panicKernel(): string {
  return printingKernel('panic', [
    '[    1.000000] Kernel panic - not syncing: VFS: Unable to mount root fs',
    '[    1.000001] CPU: 0 PID: 1 Comm: swapper/0',
    '[    1.000002] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs ]---',
  ])
}

/** Prints what Linux prints when it powers off without ACPI, then halts. */
export function powerDownKernel(): string {
  return printingKernel('powerdown', ['[   10.000000] reboot: Power down'])
}

/** Prints what Linux prints when poweroff(8) finds no power-off method and halts instead. */
export function haltKernel(): string {
  return printingKernel('halt', ['[  123.335990] reboot: System halted'])
}

/** A 64-bit ELF that executes ud2 with an empty IDT: #UD, #GP, #DF, then a triple fault. */
export function tripleFaultKernel(): string {
  return build('triple', '.text\n.code64\n.globl _start\n_start:\n  ud2\n', [
    '-Ttext=0x1000000',
    '-e',
    '_start',
  ])
}

/** A 64-bit ELF that writes `count` bytes (a repeating a-z pattern) to the UART as fast as it can, then resets. */
export function floodKernel(count: number): string {
  return build(
    'flood',
    `.text
.code64
.globl _start
_start:
  mov dx, 0x3f8
  mov ecx, ${count}
  xor ebx, ebx
1: mov al, bl
  add al, 0x61
  out dx, al
  inc ebx
  cmp ebx, 26
  jne 2f
  xor ebx, ebx
2: loop 1b
  mov al, 0xfe
  out 0x64, al
  hlt
`,
    ['-Ttext=0x1000000', '-e', '_start'],
  )
}

// A tiny 64-bit "kernel" built with binutils at test time, entered by the micro board's Linux loader
// (64-bit boot protocol, identity-mapped 4 GiB). It does what a PCI driver does, through the legacy
// configuration ports: scans bus 0 for the test device, sizes BAR0 by writing all-ones, programs it
// to 0xC8000000, enables memory decoding, talks to the registers, walks the capability list to the
// MSI-X capability, then powers the machine off through the ACPI sleep control register.
// Everything it learns goes to the debug console (port 0xE9) as one line per step.
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const GUEST_BAR0 = 0xc8000000

export function pciProbeKernel(vendorDevice: number, pmPort: number): string {
  const source = `
.intel_syntax noprefix
.text
.code64
.globl _start
_start:
  xor ebx, ebx                      # device number
scan:
  mov r12d, ebx
  shl r12d, 11
  or r12d, 0x80000000               # CONFIG_ADDRESS: enable, bus 0, device ebx, function 0
  xor ecx, ecx
  call cfgread
  cmp eax, ${vendorDevice}
  je found
  inc ebx
  cmp ebx, 32
  jb scan
  lea rsi, [rip + m_none]
  call puts
  jmp poweroff
found:
  lea rsi, [rip + m_found]
  call puts
  mov eax, ebx
  call puthex
  # Size BAR0: all-ones, read back the mask.
  mov ecx, 0x10
  mov edi, 0xffffffff
  call cfgwrite
  call cfgread
  mov r14d, eax
  lea rsi, [rip + m_mask]
  call puts
  mov eax, r14d
  call puthex
  and r14d, 0xfffffff0
  neg r14d                          # size = ~mask + 1
  lea rsi, [rip + m_size]
  call puts
  mov eax, r14d
  call puthex
  # Program BAR0 and enable memory decoding and bus mastering.
  mov ecx, 0x10
  mov edi, ${GUEST_BAR0}
  call cfgwrite
  mov ecx, 0x04
  mov edi, 0x6
  call cfgwrite
  mov ecx, 0x10
  call cfgread
  mov r14d, eax
  lea rsi, [rip + m_bar]
  call puts
  mov eax, r14d
  call puthex
  # Talk to the device: its ID, then scratch and the device's complement of it.
  mov r13d, ${GUEST_BAR0}
  mov r14d, [r13]
  lea rsi, [rip + m_id]
  call puts
  mov eax, r14d
  call puthex
  mov dword ptr [r13 + 4], 0x12345678
  mov r14d, [r13 + 8]
  lea rsi, [rip + m_live]
  call puts
  mov eax, r14d
  call puthex
  # Walk the capability list from 0x34 to MSI-X (ID 0x11).
  mov ecx, 0x34
  call cfgread
  movzx r15d, al
caps:
  test r15d, r15d
  jz nocap
  mov ecx, r15d
  call cfgread
  cmp al, 0x11
  je msix
  shr eax, 8
  movzx r15d, al
  jmp caps
msix:
  shr eax, 16
  and eax, 0x7ff
  inc eax                           # table size
  mov r14d, eax
  lea rsi, [rip + m_msix]
  call puts
  mov eax, r15d
  call puthex
  lea rsi, [rip + m_vec]
  call puts
  mov eax, r14d
  call puthex
  jmp poweroff
nocap:
  lea rsi, [rip + m_nocap]
  call puts
poweroff:
  lea rsi, [rip + m_off]
  call puts
  mov dx, ${pmPort}
  mov al, 0x34                      # SLP_TYP 5 (\\_S5) << 2 | SLP_EN
  out dx, al
1:
  hlt
  jmp 1b

cfgread:                            # ecx = register -> eax
  mov eax, r12d
  or eax, ecx
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  ret
cfgwrite:                           # ecx = register, edi = value
  mov eax, r12d
  or eax, ecx
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  mov eax, edi
  out dx, eax
  ret
puts:                               # rsi = NUL-terminated string; clobbers al
  mov dx, 0xe9
2:
  mov al, [rsi]
  test al, al
  jz 3f
  out dx, al
  inc rsi
  jmp 2b
3:
  ret
puthex:                             # eax as 8 hex digits, keeps eax
  push rax
  push rcx
  mov r8d, eax
  mov dx, 0xe9
  mov ecx, 8
4:
  rol r8d, 4
  mov eax, r8d
  and eax, 0xf
  cmp eax, 10
  jb 5f
  add eax, 0x57 - 0x30
5:
  add eax, 0x30
  out dx, al
  dec ecx
  jnz 4b
  pop rcx
  pop rax
  ret

m_none: .asciz "no device\\n"
m_found: .asciz "found at device "
m_mask: .asciz "\\nbar0 mask "
m_size: .asciz "\\nbar0 size "
m_bar: .asciz "\\nbar0 "
m_id: .asciz "\\nid "
m_live: .asciz "\\nliveness "
m_msix: .asciz "\\nmsix at "
m_vec: .asciz " vectors "
m_nocap: .asciz "\\nno msix"
m_off: .asciz "\\npoweroff\\n"
`
  const dir = join(tmpdir(), 'vmm-standard-guests')
  const key = createHash('sha256').update(source).digest('hex').slice(0, 12)
  const out = join(dir, `pci-probe-${key}`)
  if (!existsSync(out)) {
    mkdirSync(dir, { recursive: true })
    writeFileSync(`${out}.S`, source)
    execFileSync('as', ['--64', '-o', `${out}.o`, `${out}.S`])
    execFileSync('ld', ['-m', 'elf_x86_64', '-Ttext=0x1000000', '-e', '_start', '-o', out, `${out}.o`])
  }
  return out
}

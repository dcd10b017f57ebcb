// The virtio-pci guest driver the KVM tests run (virtio-pci.kvm.test.ts, snapshot.kvm.test.ts):
// real mode to 32-bit protected mode, virtio-rng found through 0xCF8/0xCFC, its 64-bit BAR moved
// below 4 GiB, MSI-X on, one queue, one doorbell, the queue's MSI-X interrupt in an IDT handler.
import { LOAD, PM_PORT } from './virtio-pci-machine.js'

export const GUEST_BAR = 0xc8000000
export const QUEUE_VECTOR = 0x41

/** Where the guest of a second round (snapshot.kvm.test.ts) waits for a nonzero word from the host. */
export const GO_FLAG = 0x4000

/**
 * The guest: real mode -> flat 32-bit protected mode, then a virtio-pci driver in assembly. Every
 * step it learns goes to the debug console, one line each. With `secondRound`, after the first
 * interrupt it says "waiting", spins until the host writes GO_FLAG, then makes the same buffer
 * available again, rings the doorbell and reports the second interrupt before it powers off.
 */
export const virtioPciGuest = ({ secondRound = false } = {}) => `
.code16
  cli
  lgdt [gdt_desc - ${LOAD}]
  mov eax, cr0
  or eax, 1
  mov cr0, eax
  .byte 0x66, 0xea
  .long start32
  .word 0x08

.code32
start32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x9000
  # IDT at 0x2000: every vector to 'ignore', the queue's vector to 'on_queue'.
  xor ecx, ecx
idt_fill:
  mov eax, offset ignore
  call set_gate
  inc ecx
  cmp ecx, 256
  jb idt_fill
  mov ecx, ${QUEUE_VECTOR}
  mov eax, offset on_queue
  call set_gate
  lidt [idt_desc]
  # The local APIC on: spurious vector 0xff, software enable; accept every priority.
  mov dword ptr [0xfee000f0], 0x1ff
  mov dword ptr [0xfee00080], 0

  # Find 1af4:1044 on bus 0.
  xor ebx, ebx
scan:
  mov ebp, ebx
  shl ebp, 11
  or ebp, 0x80000000
  xor ecx, ecx
  call cfgread
  cmp eax, 0x10441af4
  je found
  inc ebx
  cmp ebx, 32
  jb scan
  lea esi, m_none
  call puts
  jmp poweroff
found:
  lea esi, m_found
  call puts
  mov eax, ebx
  call puthex
  # Walk the capabilities: virtio common (1) and notify (2) structures, MSI-X.
  mov ecx, 0x34
  call cfgread
  movzx edi, al
caps:
  test edi, edi
  jz caps_done
  mov ecx, edi
  call cfgread
  cmp al, 0x11
  jne 1f
  mov [msix_cap], edi
1:
  cmp al, 0x09
  jne next_cap
  shr eax, 24
  cmp al, 1
  jne 2f
  lea ecx, [edi + 8]
  call cfgread
  mov [common_off], eax
2:
  cmp al, 2
  jne next_cap
  lea ecx, [edi + 8]
  call cfgread
  mov [notify_off], eax
  lea ecx, [edi + 16]
  call cfgread
  mov [notify_mult], eax
next_cap:
  mov ecx, edi
  call cfgread
  shr eax, 8
  movzx edi, al
  jmp caps
caps_done:
  lea esi, m_common
  call puts
  mov eax, [common_off]
  call puthex
  lea esi, m_notify
  call puts
  mov eax, [notify_off]
  call puthex
  lea esi, m_mult
  call puts
  mov eax, [notify_mult]
  call puthex
  # BAR 0 is 64-bit: low half, then high half 0, below 4 GiB; then memory decoding and bus master.
  mov ecx, 0x10
  mov edx, ${GUEST_BAR}
  call cfgwrite
  mov ecx, 0x14
  xor edx, edx
  call cfgwrite
  mov ecx, 0x04
  mov edx, 0x6
  call cfgwrite
  # MSI-X: entry 1 (the queue) to the local APIC, vector ${QUEUE_VECTOR}, unmasked; then enable.
  mov ecx, [msix_cap]
  add ecx, 4
  call cfgread
  and eax, 0xfffffff8
  lea edi, [eax + ${GUEST_BAR} + 16]
  mov dword ptr [edi], 0xfee00000
  mov dword ptr [edi + 4], 0
  mov dword ptr [edi + 8], ${QUEUE_VECTOR}
  mov dword ptr [edi + 12], 0
  mov ecx, [msix_cap]
  call cfgread
  or eax, 0x80000000
  mov edx, eax
  mov ecx, [msix_cap]
  call cfgwrite
  # The device: reset, ACKNOWLEDGE, DRIVER, VERSION_1, FEATURES_OK.
  mov edi, [common_off]
  add edi, ${GUEST_BAR}
  mov byte ptr [edi + 0x14], 0
  mov byte ptr [edi + 0x14], 1
  mov byte ptr [edi + 0x14], 3
  mov dword ptr [edi + 0x08], 1
  mov dword ptr [edi + 0x0c], 1
  mov byte ptr [edi + 0x14], 11
  test byte ptr [edi + 0x14], 8
  jz fail
  # Queue 0: 8 entries at 0x30000, vector 1, enabled; its doorbell address from queue_notify_off.
  mov word ptr [edi + 0x16], 0
  mov word ptr [edi + 0x18], 8
  mov word ptr [edi + 0x1a], 1
  cmp word ptr [edi + 0x1a], 1
  jne fail
  mov dword ptr [edi + 0x20], 0x30000
  mov dword ptr [edi + 0x24], 0
  mov dword ptr [edi + 0x28], 0x30100
  mov dword ptr [edi + 0x2c], 0
  mov dword ptr [edi + 0x30], 0x30200
  mov dword ptr [edi + 0x34], 0
  mov word ptr [edi + 0x1c], 1
  movzx eax, word ptr [edi + 0x1e]
  imul eax, [notify_mult]
  add eax, [notify_off]
  add eax, ${GUEST_BAR}
  mov esi, eax
  mov [doorbell], eax
  mov byte ptr [edi + 0x14], 15
  # One 64-byte device-writable buffer, made available; then the 16-bit doorbell write.
  mov dword ptr [0x30000], 0x31000
  mov dword ptr [0x30004], 0
  mov dword ptr [0x30008], 64
  mov word ptr [0x3000c], 2
  mov word ptr [0x30104], 0
  mov word ptr [0x30102], 1
  mov word ptr [esi], 0
  # Sleep until the queue's interrupt: sti's one-instruction shadow means it cannot come between
  # sti and hlt and be missed.
  sti
  hlt
  jmp fail                          # woken by something else
woke:
  cmp dword ptr [irqs], 1
  jne round2
  lea esi, m_irq
  call puts
  mov eax, [irqs]
  call puthex
  lea esi, m_used
  call puts
  movzx eax, word ptr [0x30202]
  call puthex
  lea esi, m_len
  call puts
  mov eax, [0x30208]
  call puthex
${
  secondRound
    ? `  lea esi, m_wait
  call puts
8:
  pause
  cmp dword ptr [${GO_FLAG}], 0
  je 8b
  mov word ptr [0x30106], 0         # avail ring[1]: descriptor 0 again
  mov word ptr [0x30102], 2
  mov esi, [doorbell]
  mov word ptr [esi], 0
  sti
  hlt
  jmp fail`
    : '  jmp poweroff'
}
round2:
  lea esi, m_irq
  call puts
  mov eax, [irqs]
  call puthex
  lea esi, m_used
  call puts
  movzx eax, word ptr [0x30202]
  call puthex
  jmp poweroff

fail:
  lea esi, m_fail
  call puts
poweroff:
  lea esi, m_off
  call puts
  mov dx, ${PM_PORT}
  mov al, 0x34                      # SLP_TYP 5 << 2 | SLP_EN
  out dx, al
3:
  hlt
  jmp 3b

# The handler does not return: kvm_pvm's instruction emulator fails on iretd (an internal error
# exit), so it drops its frame and goes on at 'woke' with interrupts still off.
on_queue:
  inc dword ptr [irqs]
  mov dword ptr [0xfee000b0], 0     # EOI
  add esp, 12                       # eip, cs, eflags
  jmp woke
ignore:                             # nothing else is expected: report it
  jmp fail

set_gate:                           # ecx = vector, eax = handler
  mov word ptr [0x2000 + ecx * 8], ax
  mov word ptr [0x2000 + ecx * 8 + 2], 0x08
  mov word ptr [0x2000 + ecx * 8 + 4], 0x8e00
  shr eax, 16
  mov word ptr [0x2000 + ecx * 8 + 6], ax
  ret
cfgread:                            # ecx = register -> eax
  mov eax, ebp
  or eax, ecx
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  ret
cfgwrite:                           # ecx = register, edx = value
  push edx
  mov eax, ebp
  or eax, ecx
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  pop eax
  out dx, eax
  ret
puts:                               # esi = NUL-terminated string
  mov dx, 0xe9
4:
  mov al, [esi]
  test al, al
  jz 5f
  out dx, al
  inc esi
  jmp 4b
5:
  ret
puthex:                             # eax as 8 hex digits
  push ecx
  push ebx
  mov ebx, eax
  mov dx, 0xe9
  mov ecx, 8
6:
  rol ebx, 4
  mov eax, ebx
  and eax, 0xf
  cmp eax, 10
  jb 7f
  add eax, 0x27
7:
  add eax, 0x30
  out dx, al
  dec ecx
  jnz 6b
  pop ebx
  pop ecx
  ret

.balign 8
gdt:
  .quad 0
  .quad 0x00cf9a000000ffff
  .quad 0x00cf92000000ffff
gdt_desc:
  .word 23
  .long gdt
idt_desc:
  .word 256 * 8 - 1
  .long 0x2000
irqs: .long 0
msix_cap: .long 0
common_off: .long 0
notify_off: .long 0
notify_mult: .long 0
doorbell: .long 0
m_none: .asciz "no device\\n"
m_found: .asciz "found at device "
m_common: .asciz "\\ncommon "
m_notify: .asciz " notify "
m_mult: .asciz " multiplier "
m_irq: .asciz "\\nirqs "
m_used: .asciz " used "
m_len: .asciz " length "
m_fail: .asciz "\\nfail"
m_off: .asciz "\\npoweroff\\n"
m_wait: .asciz "\\nwaiting"
`

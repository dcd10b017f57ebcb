# The guest of syscall.mjs (ENTRY=syscall) as a flat binary at 0x10000: kernel sets up a TSS,
# EFER.SCE/STAR/LSTAR, drops to CPL 3; user code runs `syscall`; the handler at LSTAR reports CS
# on port 0xe1; exceptions report their vector on port 0xe0.
.intel_syntax noprefix
.code64
start: jmp main
.align 16
exc_stubs:
.set v, 0
.rept 32
  .align 16
  mov al, v
  out 0xe0, al
  hlt
  .set v, v+1
.endr
.align 16
lstar:
  mov ax, cs
  out 0xe1, al
  hlt
main:
  mov rsp, 0x8000
  lidt [0x600]
  mov ax, 0x28
  ltr ax
  mov ecx, 0xc0000080
  rdmsr
  or eax, 1
  wrmsr
  mov ecx, 0xc0000081
  xor eax, eax
  mov edx, 0x00130008
  wrmsr
  mov ecx, 0xc0000082
  lea rax, [rip + lstar]
  xor edx, edx
  wrmsr
  mov ecx, 0xc0000084
  mov eax, 0x200
  xor edx, edx
  wrmsr
  push 0x1b
  push 0x70000
  push 0x202
  push 0x23
  lea rax, [rip + user]
  push rax
  iretq
user:
  mov al, 0x77
  syscall
  jmp user

// User mode -> kernel mode on kvm_pvm: a 64-bit guest kernel sets up a TSS (RSP0), user segments,
// EFER.SCE/STAR/LSTAR and an int 0x80 gate with DPL 3, drops to CPL 3 with iretq, and the user
// code enters the kernel by `syscall` (ENTRY=syscall), `int 0x80` (ENTRY=int80) or takes an exception (ENTRY=ud2). The kernel-side
// handlers report on port 0xe1 with the CPL they run at (CS & 3); exceptions go to port 0xe0.
//   ENTRY=syscall node investigations/linux-on-pvm/syscall.mjs
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { longModeVm } from './lab.mjs'

const entry = process.env.ENTRY ?? 'syscall'
const dir = mkdtempSync(join(tmpdir(), 'pvm-sys-'))
writeFileSync(
  join(dir, 'g.S'),
  `.intel_syntax noprefix
.code64
start: jmp main
.align 8
.quad exc_stubs, int80
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
int80:
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
  push 0x1b
  push 0x70000
  push 2
  push 0x23
  lea rax, [rip + user]
  push rax
  iretq
user:
  mov al, 0x77
  ${entry === 'int80' ? 'int 0x80' : entry === 'ud2' ? 'ud2' : 'syscall'}
  mov al, 0x55
  jmp user
`,
)
execFileSync('as', ['--64', '-o', join(dir, 'g.o'), join(dir, 'g.S')])
execFileSync('ld', [
  '-m',
  'elf_x86_64',
  '-Ttext=0x10000',
  '--oformat=binary',
  '-e',
  '0',
  '-o',
  join(dir, 'g.bin'),
  join(dir, 'g.o'),
])
const g = longModeVm(new Uint8Array(readFileSync(join(dir, 'g.bin'))), { pit: false })
const { dv, vcpu } = g
// GDT: 0x18 user data (DPL 3), 0x20 user code 64 (DPL 3), 0x28 64-bit TSS at 0x800 (RSP0 0x8000).
dv.setBigUint64(0x518, 0x00cff2000000ffffn, true)
dv.setBigUint64(0x520, 0x00affa000000ffffn, true)
dv.setBigUint64(0x528, 0x0000890008000067n, true)
dv.setBigUint64(0x530, 0n, true)
dv.setBigUint64(0x804, 0x8000n, true)
// User-accessible paging (U in every level) for the first GiB; gate 0x80 with DPL 3.
dv.setBigUint64(0x9000, 0xa000n | 7n, true)
dv.setBigUint64(0xa000, 0xb000n | 7n, true)
for (let i = 0; i < 512; i++) dv.setBigUint64(0xb000 + i * 8, (BigInt(i) << 21n) | 0x87n, true)
dv.setUint8(0x2000 + 0x80 * 16 + 5, 0xee)
const s = vcpu.getSregs()
s.gdt = { base: 0x500n, limit: 0x37 }
vcpu.setSregs(s)
const log = []
const t = setTimeout(() => vcpu.kick(), 5000)
const exit = await vcpu.run({
  pioIn: (_p, d) => d.fill(0),
  pioOut: (p, d, v) => {
    const r = v.getRegs()
    const cs = v.getSregs().cs
    log.push(`  (KVM_GET_SREGS at that exit: cs 0x${cs.selector.toString(16)} dpl ${cs.dpl})`)
    if (p === 0xe1)
      log.push(
        `${entry}: kernel handler reached, CS & 3 = ${d[0] & 3} (rcx = user rip 0x${r.rcx.toString(16)})`,
      )
    if (p === 0xe0)
      log.push(
        `${entry}: exception ${d[0]}, frame rip 0x${dv.getBigUint64(Number(r.rsp) + (d[0] === 14 || d[0] === 13 ? 8 : 0), true).toString(16)} error code 0x${dv.getBigUint64(Number(r.rsp), true).toString(16)}`,
      )
    v.kick()
  },
  mmioRead: (_a, d) => d.fill(0),
  mmioWrite: () => {},
  onExit: (e) => {
    log.push(
      `exit ${e.kind} ${e.kind === 'internal-error' ? [...e.instructionBytes].map((b) => b.toString(16)).join(' ') : ''}`,
    )
    return 'stop'
  },
})
clearTimeout(t)
console.log(
  log.length
    ? log.join('\n')
    : `nothing reported; exit ${exit.kind} at rip 0x${vcpu.getRegs().rip.toString(16)} cs 0x${vcpu.getSregs().cs.selector.toString(16)}`,
)
g.dispose()

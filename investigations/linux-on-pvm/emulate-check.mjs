// Checks @vmm/kvm's completeEmulationFailure (a kvm_pvm quirk; it was board-micro's) on /dev/kvm: a 64-bit kernel-mode guest runs
// popcnt (32- and 64-bit) and int3; the #BP must arrive through the guest's IDT with rip after int3.
//   node investigations/linux-on-pvm/emulate-check.mjs   (needs `pnpm build`)
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { completeEmulationFailure } from '../../packages/kvm/dist/quirks/emulation.js'
import { longModeVm } from './lab.mjs'

const dir = mkdtempSync(join(tmpdir(), 'pvm-emu-'))
writeFileSync(
  join(dir, 'g.S'),
  `.intel_syntax noprefix
.code64
start: jmp main
.align 8
.quad exc_stubs, 0
.align 16
exc_stubs:
.set v, 0
.rept 32
  .align 16
  mov al, v
  out 0xe0, al
  iretq
  .set v, v+1
.endr
main:
  mov rsp, 0x8000
  lidt [0x600]
  mov rbx, 0xff00ff00ff00ff01
  popcnt rax, rbx
  mov [0x7100], rax
  popcnt ecx, ebx
  mov [0x7108], rcx
  mov rbx, 0
  popcnt rdx, rbx
  pushfq
  pop rax
  mov [0x7110], rax
  int3
  out 0x10, al
  hlt
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
const log = []
await g.vcpu.run({
  pioIn: (_p, d) => d.fill(0),
  pioOut: (p, d, v) => {
    if (p === 0xe0)
      log.push(
        `exception ${d[0]} in the guest, frame rip 0x${g.dv.getBigUint64(Number(v.getRegs().rsp), true).toString(16)}`,
      )
    if (p === 0x10) {
      log.push('reached the end')
      v.kick()
    }
  },
  mmioRead: (_a, d) => d.fill(0),
  mmioWrite: () => {},
  onExit: (e, v) => {
    const done = completeEmulationFailure(e, v)
    if (done) {
      log.push(`VMM completed: ${done}`)
      return 'resume'
    }
    log.push(`exit ${e.kind}`)
    return 'stop'
  },
})
const r = (a) => g.dv.getBigUint64(a, true)
log.push(
  `popcnt 64 = ${r(0x7100)} (want 33), popcnt 32 = ${r(0x7108)} (want 17), ZF after popcnt of 0 = ${(r(0x7110) >> 6n) & 1n} (want 1)`,
)
console.log(log.join('\n'))
g.dispose()

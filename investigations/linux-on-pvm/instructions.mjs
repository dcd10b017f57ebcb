// Executes candidate instructions one by one in 64-bit kernel mode (CPL 0) on /dev/kvm and lists,
// for each, whether it ran, raised an exception in the guest, or stopped the vCPU with an
// emulation failure (KVM_EXIT_INTERNAL_ERROR). After a failure or an exception the host moves rip
// past the instruction (and unwinds the exception frame) and resumes.
//
//   node investigations/linux-on-pvm/instructions.mjs        (needs `pnpm build` of @vmm/kvm)
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { longModeVm } from './lab.mjs'

const LOAD = 0x10000
export const INSTRUCTIONS = [
  'nop',
  'int3',
  'popcnt rax, rbx',
  'lzcnt rax, rbx',
  'tzcnt rax, rbx',
  'bsf rax, rbx',
  'bsr rax, rbx',
  'movbe eax, [0x7100]',
  'crc32 eax, ebx',
  'cmpxchg8b [0x7100]',
  'cmpxchg16b [0x7100]',
  'lock cmpxchg16b [0x7100]',
  'lock cmpxchg [0x7100], rbx',
  'lock xadd [0x7100], rbx',
  'lock bts qword ptr [0x7100], 3',
  'lock or qword ptr [0x7100], 1',
  'xchg [0x7100], rbx',
  'xgetbv',
  'xsetbv',
  'xsave [0x7400]',
  'xsaveopt [0x7400]',
  'xsavec [0x7400]',
  'xrstor [0x7400]',
  'fxsave [0x7400]',
  'fxrstor [0x7400]',
  'fninit',
  'fnstcw [0x7100]',
  'ldmxcsr [0x7110]',
  'stmxcsr [0x7100]',
  'pxor xmm0, xmm1',
  'movdqa xmm0, [0x7400]',
  'movups [0x7400], xmm1',
  'vpxor xmm0, xmm1, xmm2',
  'rdtsc',
  'rdtscp',
  'rdpid rax',
  'rdrand rax',
  'rdseed rax',
  'cpuid',
  'rdmsr',
  'clflush [0x7100]',
  'clflushopt [0x7100]',
  'clwb [0x7100]',
  'mfence',
  'lfence',
  'sfence',
  'pause',
  'wbinvd',
  'invlpg [0x7100]',
  'swapgs',
  'stac',
  'clac',
  'sgdt [0x7100]',
  'sidt [0x7100]',
  'str ax',
  'verw ax',
  'lsl eax, ebx',
  'mov rax, cr4',
  'mov cr4, rax',
  'mov rax, dr7',
  'rep movsb',
  'rep stosq',
  'bswap rax',
  'cmovz rax, rbx',
  'shld rax, rbx, 3',
  'mul rbx',
  'div rbx',
  'adcx rax, rbx',
  'andn rax, rbx, rcx',
  'shlx rax, rbx, rcx',
  'pdep rax, rbx, rcx',
  'ud2',
  'nop dword ptr [rax + rax*1 + 0]',
  'xlat',
  'cli',
  'sti',
]

function build() {
  const dir = mkdtempSync(join(tmpdir(), 'pvm-insn-'))
  const body = INSTRUCTIONS.map(
    (ins, i) =>
      `i${i}s:\n  ${ins}\ni${i}e:\n  mov rsi, 0x7200\n  mov rdi, 0x7300\n  mov rcx, 4\n  xor eax, eax\n  xor edx, edx\n  mov rbx, 1\n`,
  ).join('')
  const src = `.intel_syntax noprefix
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
  hlt
  .set v, v+1
.endr
main:
  mov rsp, 0x8000
  lidt [0x600]
  mov rsi, 0x7200
  mov rdi, 0x7300
  mov rcx, 4
  xor eax, eax
  xor edx, edx
  mov rbx, 1
${body}
  out 0x10, al
  hlt
.align 8
table:
${INSTRUCTIONS.map((_, i) => `.quad i${i}s, i${i}e`).join('\n')}
`
  writeFileSync(join(dir, 'g.S'), src)
  execFileSync('as', ['--64', '-o', join(dir, 'g.o'), join(dir, 'g.S')])
  execFileSync('ld', [
    '-m',
    'elf_x86_64',
    `-Ttext=0x${LOAD.toString(16)}`,
    '--oformat=binary',
    '-e',
    '0',
    '-o',
    join(dir, 'g.bin'),
    join(dir, 'g.o'),
  ])
  execFileSync('ld', [
    '-m',
    'elf_x86_64',
    `-Ttext=0x${LOAD.toString(16)}`,
    '-e',
    '0',
    '-o',
    join(dir, 'g.elf'),
    join(dir, 'g.o'),
  ])
  const nm = execFileSync('nm', [join(dir, 'g.elf')]).toString()
  const table = Number.parseInt(/^([0-9a-f]+) t table$/m.exec(nm)[1], 16)
  return { code: new Uint8Array(readFileSync(join(dir, 'g.bin'))), table }
}

const hex = (n) => `0x${n.toString(16)}`
const ERRCODE = new Set([8, 10, 11, 12, 13, 14, 17, 21])

export async function runInstructions({ osxsave = true } = {}) {
  const { code, table } = build()
  const g = longModeVm(code, { pit: false })
  const { vcpu, dv } = g
  const ranges = INSTRUCTIONS.map((_, i) => [
    Number(dv.getBigUint64(LOAD + table - LOAD + i * 16 - 0, true)),
    0,
  ])
  for (let i = 0; i < INSTRUCTIONS.length; i++) {
    const off = table + i * 16
    ranges[i] = [Number(dv.getBigUint64(off, true)), Number(dv.getBigUint64(off + 8, true))]
  }
  if (osxsave) {
    const s = vcpu.getSregs()
    s.cr4 |= 1n << 18n
    try {
      vcpu.setSregs(s)
    } catch (e) {
      console.log(`CR4.OSXSAVE refused: ${e.message}`)
    }
  }
  dv.setUint32(0x7110, 0x1f80, true)
  const result = INSTRUCTIONS.map(() => 'ok')
  const which = (rip) => ranges.findIndex(([s, e]) => rip >= s && rip < e)
  const h = {
    pioIn: (_p, d) => d.fill(0),
    pioOut: (p, d, v) => {
      if (p === 0x10) v.kick() // the end of the list (hlt would wait for ever with the irqchip)
      if (p !== 0xe0) return
      const vec = d[0]
      const r = v.getRegs()
      let sp = Number(r.rsp)
      if (ERRCODE.has(vec)) sp += 8
      const rip = Number(dv.getBigUint64(sp, true))
      // #BP is a trap: the saved rip is after int3.
      const i = which(vec === 3 ? rip - 1 : rip)
      if (i < 0) throw new Error(`exception ${vec} at ${hex(rip)} outside the table`)
      result[i] = `exception #${vec}`
      v.setRegs({ ...r, rip: BigInt(ranges[i][1]), rsp: BigInt(sp + 40), rflags: 2n })
    },
    mmioRead: (_a, d) => d.fill(0),
    mmioWrite: () => {},
    onExit: (e, v) => {
      if (e.kind === 'internal-error') {
        const r = v.getRegs()
        const i = which(Number(r.rip))
        if (i < 0) return 'stop'
        result[i] =
          `EMULATION FAILURE (suberror ${e.suberror}, bytes ${[...e.instructionBytes].map((b) => b.toString(16).padStart(2, '0')).join(' ')})`
        v.setRegs({ ...r, rip: BigInt(ranges[i][1]) })
        return 'resume'
      }
      return 'stop'
    },
  }
  const watchdog = setTimeout(() => vcpu.kick(), 20000)
  const exit = await vcpu.run(h)
  clearTimeout(watchdog)
  if (exit.kind === 'kick' && result.every((r) => r === 'ok'))
    console.log(`stopped at rip ${hex(vcpu.getRegs().rip)}`)
  g.dispose()
  return { exit, result }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { exit, result } = await runInstructions()
  console.log(`final exit: ${exit.kind}`)
  for (const [i, ins] of INSTRUCTIONS.entries()) console.log(`${ins.padEnd(34)} ${result[i]}`)
}

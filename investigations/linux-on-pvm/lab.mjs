// Tiny 64-bit guests on /dev/kvm for issue 5 (Linux on kvm_pvm hosts). Each experiment is a few
// lines of assembly (GNU as, Intel syntax) put into one template: long mode with identity-mapped
// page tables (first GiB + the 3-4 GiB hole holding the IOAPIC and LAPIC pages), an IDT whose
// exception stubs report to port 0xE0 and whose vector 0x30 counts interrupts, then `setup`, `sti`
// and a loop. The host samples the guest's counters in shared memory while it runs.
//
//   node investigations/linux-on-pvm/lab.mjs [experiment...]     (needs `pnpm build` of @vmm/kvm)
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Kvm } from '../../packages/kvm/dist/index.js'

const LOAD = 0x10000
const tmp = mkdtempSync(join(tmpdir(), 'pvm-lab-'))

function assemble(src) {
  const s = join(tmp, 'g.S')
  writeFileSync(s, `.intel_syntax noprefix\n.code64\n${src}\n`)
  execFileSync('as', ['--64', '-o', join(tmp, 'g.o'), s])
  execFileSync('ld', [
    '-m',
    'elf_x86_64',
    `-Ttext=0x${LOAD.toString(16)}`,
    '--oformat=binary',
    '-e',
    '0',
    '-o',
    join(tmp, 'g.bin'),
    join(tmp, 'g.o'),
  ])
  return new Uint8Array(readFileSync(join(tmp, 'g.bin')))
}

// Counters the guest keeps (guest physical = linear).
const C = { irqs: 0x7000, tsc: 0x7008, loops: 0x7010, aux: 0x7018, aux2: 0x7020, aux3: 0x7028 }
const PVCLOCK = 0x6000

const EOI = {
  x2apic: 'mov ecx, 0x80b\nxor eax, eax\nxor edx, edx\nwrmsr',
  xapic: 'mov rcx, 0xfee000b0\nmov dword ptr [rcx], 0',
  pic: 'mov al, 0x20\nout 0x20, al',
}

function template({ setup = '', loop = 'hlt', handler = '', eoi = EOI.x2apic, extra = '' }) {
  return `
start: jmp main
.align 8
.quad exc_stubs, irq_handler
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
irq_handler:
  push rax
  push rcx
  push rdx
  inc qword ptr [${C.irqs}]
  rdtsc
  shl rdx, 32
  or rax, rdx
  mov [${C.tsc}], rax
  ${handler}
  ${eoi}
  pop rdx
  pop rcx
  pop rax
  iretq
main:
  mov rsp, 0x8000
  lidt [0x600]
  ${setup}
  sti
1:
  ${loop}
  inc qword ptr [${C.loops}]
  jmp 1b
${extra}
`
}

const X2APIC_ON = `
  mov ecx, 0x1b
  rdmsr
  or eax, 0xc00
  wrmsr
  mov ecx, 0x80f
  mov eax, 0x1ff
  xor edx, edx
  wrmsr`
const XAPIC_ON = `
  mov rbx, 0xfee00000
  mov dword ptr [rbx + 0xf0], 0x1ff`
const PIT_100HZ = `
  mov al, 0x34
  out 0x43, al
  mov ax, 11932
  out 0x40, al
  mov al, ah
  out 0x40, al`
const PIC_INIT = (mask) => `
  mov al, 0x11
  out 0x20, al
  out 0xa0, al
  mov al, 0x30
  out 0x21, al
  mov al, 0x38
  out 0xa1, al
  mov al, 4
  out 0x21, al
  mov al, 2
  out 0xa1, al
  mov al, 1
  out 0x21, al
  out 0xa1, al
  mov al, ${mask}
  out 0x21, al
  mov al, 0xff
  out 0xa1, al`
// IOAPIC redirection entry for `pin`: vector 0x30, fixed, physical, edge, dest APIC 0.
const IOAPIC_PIN = (pin) => `
  mov rbx, 0xfec00000
  mov dword ptr [rbx], ${0x10 + 2 * pin}
  mov dword ptr [rbx + 0x10], 0x30
  mov dword ptr [rbx], ${0x11 + 2 * pin}
  mov dword ptr [rbx + 0x10], 0`

export const experiments = {
  // --- the timers ---
  'x2apic-periodic': {
    setup: `${X2APIC_ON}
    mov ecx, 0x83e
    mov eax, 0xb
    xor edx, edx
    wrmsr
    mov ecx, 0x832
    mov eax, 0x20030
    wrmsr
    mov ecx, 0x838
    mov eax, 2100000
    wrmsr`,
  },
  'x2apic-oneshot': {
    setup: `${X2APIC_ON}
    mov ecx, 0x83e
    mov eax, 0xb
    xor edx, edx
    wrmsr
    mov ecx, 0x832
    mov eax, 0x30
    wrmsr
    mov ecx, 0x838
    mov eax, 2100000
    wrmsr`,
    handler: `mov ecx, 0x838
    mov eax, 2100000
    xor edx, edx
    wrmsr`,
  },
  'x2apic-tscdeadline': {
    setup: `${X2APIC_ON}
    mov ecx, 0x832
    mov eax, 0x40030
    xor edx, edx
    wrmsr
    rdtsc
    add eax, 2100000
    adc edx, 0
    mov ecx, 0x6e0
    wrmsr`,
    handler: `rdtsc
    add eax, 2100000
    adc edx, 0
    mov ecx, 0x6e0
    wrmsr`,
  },
  'xapic-periodic': {
    eoi: EOI.xapic,
    setup: `${XAPIC_ON}
    mov dword ptr [rbx + 0x3e0], 0xb
    mov dword ptr [rbx + 0x320], 0x20030
    mov dword ptr [rbx + 0x380], 2100000`,
  },
  'xapic-oneshot': {
    eoi: EOI.xapic,
    setup: `${XAPIC_ON}
    mov dword ptr [rbx + 0x3e0], 0xb
    mov dword ptr [rbx + 0x320], 0x30
    mov dword ptr [rbx + 0x380], 2100000`,
    handler: `mov rcx, 0xfee00000
    mov dword ptr [rcx + 0x380], 2100000`,
  },
  'pit-pic': { eoi: EOI.pic, lint0ExtInt: true, setup: `${PIC_INIT(0xfe)}${PIT_100HZ}` },
  'pit-ioapic-pin0': { eoi: EOI.xapic, setup: `${XAPIC_ON}${PIC_INIT(0xff)}${IOAPIC_PIN(0)}${PIT_100HZ}` },
  'pit-ioapic-pin2': { eoi: EOI.xapic, setup: `${XAPIC_ON}${PIC_INIT(0xff)}${IOAPIC_PIN(2)}${PIT_100HZ}` },
  'pit-ioapic-pin0-x2apic': {
    eoi: EOI.x2apic,
    setup: `${X2APIC_ON}${PIC_INIT(0xff)}${IOAPIC_PIN(0)}${PIT_100HZ}`,
  },
  // The same PIT/IOAPIC route, but the guest spins (no hlt): are interrupts taken while running?
  'pit-ioapic-pin0-spin': {
    eoi: EOI.xapic,
    loop: 'pause',
    setup: `${XAPIC_ON}${PIC_INIT(0xff)}${IOAPIC_PIN(0)}${PIT_100HZ}`,
  },
  'x2apic-periodic-spin': {
    loop: 'pause',
    setup: `${X2APIC_ON}
    mov ecx, 0x83e
    mov eax, 0xb
    xor edx, edx
    wrmsr
    mov ecx, 0x832
    mov eax, 0x20030
    wrmsr
    mov ecx, 0x838
    mov eax, 2100000
    wrmsr`,
  },
  // --- the clocks: no interrupts, the loop stores rdtsc and a kvmclock read ---
  'tsc-kvmclock': {
    setup: `
    mov ecx, 0x4b564d01
    mov eax, ${PVCLOCK | 1}
    xor edx, edx
    wrmsr
    cli`,
    loop: `rdtsc
    shl rdx, 32
    or rax, rdx
    mov [${C.tsc}], rax
    mov rax, [${PVCLOCK + 8}]
    mov [${C.aux}], rax
    mov rax, [${PVCLOCK + 16}]
    mov [${C.aux2}], rax
    mov rax, [${PVCLOCK + 24}]
    mov [${C.aux3}], rax`,
  },
}

function buildIdt(dv, code) {
  const cdv = new DataView(code.buffer)
  const exc = Number(cdv.getBigUint64(8, true))
  const irq = Number(cdv.getBigUint64(16, true))
  const IDT = 0x2000
  const gate = (v, off) => {
    const p = IDT + v * 16
    dv.setUint16(p, off & 0xffff, true)
    dv.setUint16(p + 2, 8, true)
    dv.setUint8(p + 4, 0)
    dv.setUint8(p + 5, 0x8e)
    dv.setUint16(p + 6, (off >>> 16) & 0xffff, true)
    dv.setUint32(p + 8, 0, true)
    dv.setUint32(p + 12, 0, true)
  }
  for (let v = 0; v < 32; v++) gate(v, exc + v * 16)
  for (let v = 32; v < 256; v++) gate(v, irq)
  dv.setUint16(0x600, 256 * 16 - 1, true)
  dv.setBigUint64(0x602, BigInt(IDT), true)
}

/** A long-mode VM with the in-kernel irqchip (+PIT), `code` at LOAD, CPUID set for vCPU 0. */
export function longModeVm(code, { pit = true, lint0ExtInt = false } = {}) {
  const kvm = Kvm.open()
  const vm = kvm.createVm()
  vm.setTssAddr(0xfffbd000)
  vm.createIrqchip()
  if (pit) vm.createPit2()
  const ram = vm.mapMemory(0x400000)
  const mem = new Uint8Array(ram.buffers[0])
  const dv = new DataView(ram.buffers[0])
  mem.set(code, LOAD)
  vm.setUserMemoryRegion({ slot: 0, guestAddress: 0, size: ram.size, ram })
  dv.setBigUint64(0x500, 0n, true)
  dv.setBigUint64(0x508, 0x00af9a000000ffffn, true)
  dv.setBigUint64(0x510, 0x00cf92000000ffffn, true)
  dv.setBigUint64(0x9000, 0xa000n | 3n, true)
  dv.setBigUint64(0xa000, 0xb000n | 3n, true)
  dv.setBigUint64(0xa000 + 3 * 8, 0xc000n | 3n, true)
  for (let i = 0; i < 512; i++) {
    dv.setBigUint64(0xb000 + i * 8, (BigInt(i) << 21n) | 0x83n, true)
    dv.setBigUint64(0xc000 + i * 8, (0xc0000000n + (BigInt(i) << 21n)) | 0x93n, true) // PCD
  }
  buildIdt(dv, code)
  const vcpu = vm.createVcpu(0)
  const cpuid = kvm
    .supportedCpuid()
    .map((e) => (e.function === 1 ? { ...e, ebx: e.ebx & 0xffffff, ecx: (e.ecx | (1 << 31)) >>> 0 } : e))
  vcpu.setCpuid(cpuid)
  if (lint0ExtInt) {
    const l = vcpu.getLapic()
    const ldv = new DataView(l.buffer, l.byteOffset)
    ldv.setUint32(0x350, (ldv.getUint32(0x350, true) & ~0x10700) | (7 << 8), true)
    vcpu.setLapic(l)
  }
  const s = vcpu.getSregs()
  const seg = { base: 0n, limit: 0xffffffff, present: 1, dpl: 0, s: 1, g: 1, avl: 0, unusable: 0 }
  s.cs = { ...seg, selector: 8, type: 11, l: 1, db: 0 }
  s.ds = s.es = s.fs = s.gs = s.ss = { ...seg, selector: 16, type: 3, l: 0, db: 1 }
  s.gdt = { base: 0x500n, limit: 23 }
  s.cr3 = 0x9000n
  s.cr4 = 0x620n // PAE | OSFXSR | OSXMMEXCPT
  s.cr0 = 0x80050033n
  s.efer = 0x500n
  vcpu.setSregs(s)
  vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(LOAD), rsp: 0x8000n, rflags: 2n })
  return {
    kvm,
    vm,
    vcpu,
    mem,
    dv,
    dispose: () => {
      vm.dispose()
      kvm.close()
    },
  }
}

const hex = (n) => `0x${n.toString(16)}`

export async function runTimer(name, seconds = 3) {
  const ex = experiments[name]
  const code = assemble(template(ex))
  const g = longModeVm(code, { lint0ExtInt: ex.lint0ExtInt })
  const { vcpu, dv } = g
  const events = []
  const h = {
    pioIn: (_p, d) => d.fill(0xff),
    pioOut: (p, d, v) => {
      if (p === 0xe0) {
        const r = v.getRegs()
        events.push(
          `exception ${d[0]} (rip on stack ${hex(dv.getBigUint64(Number(r.rsp), true))} / ${hex(dv.getBigUint64(Number(r.rsp) + 8, true))})`,
        )
      }
    },
    mmioRead: (a, d) => {
      events.push(`mmio read ${hex(a)}`)
      d.fill(0)
    },
    mmioWrite: (a) => events.push(`mmio write ${hex(a)}`),
    onExit: (e) => {
      if (e.kind === 'hlt') return 'resume'
      if (e.kind !== 'kick')
        events.push(
          JSON.stringify(e, (_k, x) =>
            typeof x === 'bigint'
              ? hex(x)
              : x instanceof Uint8Array
                ? [...x].map((b) => b.toString(16)).join(' ')
                : x,
          ),
        )
      return 'stop'
    },
  }
  const t0 = performance.now()
  const samples = []
  const rd = (a) => dv.getBigUint64(a, true)
  const timer = setInterval(
    () =>
      samples.push({
        t: (performance.now() - t0) / 1000,
        irqs: rd(C.irqs),
        tsc: rd(C.tsc),
        loops: rd(C.loops),
        aux: rd(C.aux),
        aux2: rd(C.aux2),
        aux3: rd(C.aux3),
      }),
    500,
  )
  const stop = setTimeout(() => vcpu.kick(), seconds * 1000)
  const exit = await vcpu.run(h)
  clearInterval(timer)
  clearTimeout(stop)
  const r = vcpu.getRegs()
  g.dispose()
  return { name, exit: exit.kind, rip: hex(r.rip), events: events.slice(0, 5), samples }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const names = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(experiments)
  for (const n of names) {
    const res = await runTimer(n, Number(process.env.SECONDS ?? 3))
    const last = res.samples.at(-1) ?? {}
    console.log(
      `== ${n}: exit ${res.exit} at rip ${res.rip}; irqs ${last.irqs} loops ${last.loops} ${res.events.join('; ')}`,
    )
    if (process.env.VERBOSE || n.startsWith('tsc'))
      for (const s of res.samples)
        console.log(
          `   t=${s.t.toFixed(2)} irqs=${s.irqs} loops=${s.loops} tsc=${s.tsc} aux=${s.aux} aux2=${s.aux2} aux3=${s.aux3}`,
        )
  }
}

// The snapshot experiment with the timer Linux uses: the LAPIC timer in x2APIC mode, periodic and
// TSC-deadline (Intel SDM Vol. 3A §10.5.4, §10.12), from a real-mode guest (wrmsr works at CPL 0).
// Save in docs/snapshot.md's order, restore into a fresh VM, and see whether ticks come again:
// this covers LAPIC state, IA32_TSC and IA32_TSC_DEADLINE (written after IA32_TSC) on this host.
import type { GuestAddress } from '@vmm/core'
import { afterEach, describe, expect, it } from 'vitest'
import { Kvm, KvmVirtualMachine } from '../src/index.js'
import { assemble } from '../src/testing.js'
import { kvmUnavailable, LOAD } from './harness.js'

const disposers: (() => void)[] = []
afterEach(() => {
  for (const d of disposers.splice(0).reverse()) d()
})
const COUNTER = 0x600
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Ticks counted at [COUNTER] from the LAPIC timer, vector 0x30; `deadline`: re-armed from rdtsc. */
function guest(deadline: boolean): string {
  const rearm = `rdtsc
  add eax, 0x200000
  adc edx, 0
  mov ecx, 0x6e0
  wrmsr`
  return `.code16
  mov ecx, 0x1b
  rdmsr
  or eax, 0xc00
  wrmsr
  mov ecx, 0x80f
  mov eax, 0x1ff
  xor edx, edx
  wrmsr
  mov ecx, 0x83e
  mov eax, 0xb
  wrmsr
  mov ecx, 0x832
  mov eax, ${deadline ? '0x40030' : '0x20030'}
  wrmsr
  ${deadline ? rearm : 'mov ecx, 0x838\n  mov eax, 0x100000\n  wrmsr'}
  sti
1: hlt
  jmp 1b
  .org 0x200
  inc dword ptr [${COUNTER}]
  ${deadline ? rearm : ''}
  mov ecx, 0x80b
  xor eax, eax
  xor edx, edx
  wrmsr
  iret
`
}

function start(kvm: Kvm, deadline: boolean, ram?: Uint8Array) {
  const vm = new KvmVirtualMachine(kvm.createVm())
  disposers.push(() => vm.dispose())
  const mapping = vm.mapRam(0x100000)
  vm.setMemorySlot({
    slot: 0,
    guestAddress: 0 as GuestAddress,
    size: mapping.size,
    mapping,
    mappingOffset: 0,
    readOnly: false,
  })
  vm.createIrqchip()
  const mem = new Uint8Array(mapping.buffers[0]!)
  if (ram) mem.set(ram)
  else {
    mem.set(assemble(guest(deadline)), LOAD)
    new DataView(mem.buffer).setUint32(0x30 * 4, LOAD + 0x200, true)
  }
  const vcpu = vm.createVcpu(0)
  if (!ram) {
    vcpu.x86.setCpuid(vm.x86.supportedCpuid()) // x2APIC (and TSC-deadline) as the host has them
    const s = vcpu.getSregs()
    vcpu.setSregs({ ...s, cs: { ...s.cs, base: 0n, selector: 0 } })
    vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(LOAD), rflags: 2n, rsp: 0x8000n })
  }
  return { vm, vcpu, mem }
}

const noIo = {
  pioIn: () => {},
  pioOut: () => {},
  mmioRead: () => {},
  mmioWrite: () => {},
  onExit: () => 'stop' as const,
}
const count = (mem: Uint8Array) => new DataView(mem.buffer).getUint32(COUNTER, true)

describe.skipIf(kvmUnavailable)('save and restore with the LAPIC timer (real /dev/kvm)', () => {
  for (const deadline of [false, true]) {
    it(`${deadline ? 'TSC-deadline' : 'periodic'} LAPIC timer ticks again after a restore into a fresh VM`, async () => {
      const kvm = Kvm.open()
      disposers.push(() => kvm.close())
      const a = start(kvm, deadline)
      const run = a.vcpu.run(noIo)
      await sleep(300)
      a.vcpu.kick()
      const exit = await run
      const before = count(a.mem)
      console.log(
        `[${deadline ? 'deadline' : 'periodic'}] before snapshot: ${before} ticks in 300 ms, exit ${JSON.stringify(exit)}`,
      )
      expect(exit).toEqual({ kind: 'kick' })
      expect(before).toBeGreaterThan(5)
      const cpu = a.vcpu.x86.getState()
      const irqchip = a.vm.x86.irqchip!.get()
      const pit = a.vm.x86.pit!.get()
      const clock = a.vm.x86.clock!.get()
      const b = start(kvm, deadline, a.mem.slice())
      b.vcpu.x86.setState(cpu)
      b.vm.x86.irqchip!.set(irqchip)
      b.vm.x86.pit!.set(pit)
      b.vm.x86.clock!.set(clock)
      const again = b.vcpu.run(noIo)
      await sleep(300)
      b.vcpu.kick()
      await again
      const after = count(b.mem)
      console.log(`[${deadline ? 'deadline' : 'periodic'}] after restore: ${after - before} ticks in 300 ms`)
      expect(after - before).toBeGreaterThan(5)
    })
  }
})

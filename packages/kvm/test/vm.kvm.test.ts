// Guests on the real /dev/kvm: the system handle, errors, exits, memory, long mode, SMP, pause
// (kvm tier; the errors of opening it without one are in open.test.ts).
import { readdirSync, readFileSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { Kvm, type Vcpu, type VcpuExit } from '../src/index.js'
import { assemble } from '../src/testing.js'
import {
  type Guest,
  handler,
  kvmUnavailable,
  LOAD,
  makeGuest,
  realMode,
  realModeGuest,
  u32le,
} from './harness.js'

let guest: Guest | undefined
afterEach(() => {
  guest?.dispose()
  guest = undefined
})

describe.skipIf(kvmUnavailable)('KVM system and VM (real /dev/kvm)', () => {
  it('reports API version, capabilities, CPUID and MSR lists', () => {
    const kvm = Kvm.open()
    try {
      expect(kvm.apiVersion).toBe(12)
      const caps = kvm.capabilities()
      expect(caps.UserMemory).toBeGreaterThan(0)
      expect(kvm.vcpuMmapSize).toBeGreaterThanOrEqual(4096)
      const cpuid = kvm.supportedCpuid()
      expect(cpuid.some((e) => e.function === 0)).toBe(true)
      expect(kvm.msrIndexList().length).toBeGreaterThan(0)
    } finally {
      kvm.close()
      kvm.close()
    }
  })

  it('keeps errno, code, syscall and the ioctl name on failures', () => {
    guest = realModeGuest('hlt')
    guest.vm.createVcpu(0)
    const err = (() => {
      try {
        guest!.vm.createVcpu(0)
      } catch (e) {
        return e as Record<string, unknown>
      }
    })()
    expect(err).toMatchObject({ code: 'EEXIST', errno: -17, syscall: 'ioctl', ioctl: 'KVM_CREATE_VCPU' })
    expect(() =>
      guest!.vm.setUserMemoryRegion({ slot: 1, guestAddress: 0x123, size: 4096, ram: guest!.ram }),
    ).toThrow(expect.objectContaining({ code: 'EINVAL', ioctl: 'KVM_SET_USER_MEMORY_REGION' }))
  })

  it('runs a real-mode guest whose out/in are answered by a TypeScript port device', async () => {
    guest = realModeGuest('mov dx, 0x10\nmov al, 0x42\nout dx, al\nin al, dx\ninc al\nout dx, al\nhlt')
    const vcpu = guest.vm.createVcpu(0)
    realMode(vcpu)
    const seen: string[] = []
    const exit = await vcpu.run(
      handler({
        pioOut: (port, data) => seen.push(`out ${port.toString(16)} ${data[0]!.toString(16)}`),
        pioIn: (port, data) => {
          seen.push(`in ${port.toString(16)} size ${data.length}`)
          data[0] = 0x17
        },
      }),
    )
    expect(exit).toEqual({ kind: 'hlt' })
    expect(seen).toEqual(['out 10 42', 'in 10 size 1', 'out 10 18'])
    expect(vcpu.state).toBe('idle')
  })

  it('answers MMIO reads and sees MMIO writes from a TypeScript device', async () => {
    // RAM is 512 KiB; 0xF0000.. has no memory slot, so accesses there exit as MMIO.
    guest = realModeGuest(
      `mov ax, 0xf000
       mov ds, ax
       mov dword ptr [0x10], 0x12345678
       mov eax, [0x20]
       mov [0x30], eax
       mov byte ptr [0x40], 0x99
       hlt`,
      { memSize: 0x80000 },
    )
    const vcpu = guest.vm.createVcpu(0)
    realMode(vcpu)
    const seen: string[] = []
    await vcpu.run(
      handler({
        mmioWrite: (a, d) =>
          seen.push(`w ${a.toString(16)} ${d.length} ${[...d].map((b) => b.toString(16)).join(',')}`),
        mmioRead: (a, d) => {
          seen.push(`r ${a.toString(16)} ${d.length}`)
          new DataView(d.buffer, d.byteOffset, d.length).setUint32(0, 0xcafef00d, true)
        },
      }),
    )
    expect(seen).toEqual(['w f0010 4 78,56,34,12', 'r f0020 4', 'w f0030 4 d,f0,fe,ca', 'w f0040 1 99'])
  })

  it('shares guest memory with JavaScript both ways without copies', async () => {
    guest = realModeGuest('mov eax, [0x2000]\nout 0x10, eax\nmov dword ptr [0x2004], 0x12345678\nhlt')
    new DataView(guest.ram.buffers[0]!).setUint32(0x2000, 0xdeadbeef, true)
    const vcpu = guest.vm.createVcpu(0)
    realMode(vcpu)
    let got = 0
    await vcpu.run(handler({ pioOut: (_p, d) => (got = u32le(d)) }))
    expect(got).toBe(0xdeadbeef)
    expect(new DataView(guest.ram.buffers[0]!).getUint32(0x2004, true)).toBe(0x12345678)
  })

  it('enters 64-bit long mode from page tables and a GDT set up by the test', async () => {
    const code = assemble(
      `.code64
       mov rax, 0x1122334455667788
       mov [0x3000], rax
       mov rbx, 0x100000000
       mov dword ptr [rbx + 8], 0xabcd
       mov rcx, rsp
       out 0x10, al
       hlt`,
    )
    guest = makeGuest(code, { memSize: 0x200000 })
    const dv = new DataView(guest.ram.buffers[0]!)
    // GDT at 0x500: null, 64-bit code (selector 8), data (selector 16) — Intel SDM Vol. 3A §3.4.5.
    dv.setBigUint64(0x500, 0n, true)
    dv.setBigUint64(0x508, 0x00af9a000000ffffn, true)
    dv.setBigUint64(0x510, 0x00cf92000000ffffn, true)
    // 4-level paging (SDM Vol. 3A §4.5): PML4 0x9000 -> PDPT 0xa000; PDPT[0] -> PD 0xb000 (2 MiB
    // pages for the first GiB), PDPT[4] -> PD 0xc000 mapping 4 GiB, where no RAM is (MMIO).
    dv.setBigUint64(0x9000, 0xa000n | 3n, true)
    dv.setBigUint64(0xa000, 0xb000n | 3n, true)
    dv.setBigUint64(0xa000 + 4 * 8, 0xc000n | 3n, true)
    for (let i = 0; i < 512; i++) dv.setBigUint64(0xb000 + i * 8, (BigInt(i) << 21n) | 0x83n, true)
    dv.setBigUint64(0xc000, 0x1_0000_0000n | 0x83n, true)
    const vcpu = guest.vm.createVcpu(0)
    const s = vcpu.getSregs()
    const seg = { base: 0n, limit: 0xffffffff, present: 1, dpl: 0, s: 1, g: 1, avl: 0, unusable: 0 }
    s.cs = { ...seg, selector: 8, type: 11, l: 1, db: 0 }
    s.ds = s.es = s.fs = s.gs = s.ss = { ...seg, selector: 16, type: 3, l: 0, db: 1 }
    s.gdt = { base: 0x500n, limit: 23 }
    s.cr3 = 0x9000n
    s.cr4 = 0x20n // PAE
    s.cr0 = 0x80050033n // PG | WP | NE | ET | MP | PE
    s.efer = 0x500n // LME | LMA
    vcpu.setSregs(s)
    vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(LOAD), rsp: 0x8000n, rflags: 2n })
    const mmio: string[] = []
    let regsAtOut: ReturnType<Vcpu['getRegs']> | undefined
    await vcpu.run(
      handler({
        mmioWrite: (a, d) => mmio.push(`${a.toString(16)}=${u32le(d).toString(16)}`),
        // Register access from inside an exit handler runs on the vCPU's own thread.
        pioOut: (_p, _d, v) => (regsAtOut = v.getRegs()),
      }),
    )
    expect(dv.getBigUint64(0x3000, true)).toBe(0x1122334455667788n)
    expect(mmio).toEqual(['100000008=abcd'])
    expect(regsAtOut?.rax).toBe(0x1122334455667788n)
    expect(regsAtOut?.rcx).toBe(0x8000n)
    expect((vcpu.getSregs().efer & 0x400n) !== 0n).toBe(true) // LMA
  })

  it('runs two vCPUs at once, each on its own named thread', async () => {
    guest = realModeGuest('mov ecx, 2000\n1: out dx, al\ndec ecx\njnz 1b\nhlt')
    const vcpus = [0, 1].map((id) => guest!.vm.createVcpu(id))
    for (const [i, v] of vcpus.entries()) realMode(v, LOAD, { rdx: BigInt(0x20 + i) })
    const threads = readdirSync('/proc/self/task').map((t) =>
      readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim(),
    )
    expect(threads).toEqual(expect.arrayContaining(['vcpu0', 'vcpu1']))
    const order: number[] = []
    const counts = [0, 0]
    const runs = vcpus.map((v) =>
      v.run(
        handler({
          pioOut: (port) => {
            counts[port - 0x20]!++
            order.push(port - 0x20)
          },
        }),
      ),
    )
    expect(await Promise.all(runs)).toEqual([{ kind: 'hlt' }, { kind: 'hlt' }])
    expect(counts).toEqual([2000, 2000])
    // Both made progress while the other was running: their exits interleave.
    const firstDone = Math.min(order.lastIndexOf(0), order.lastIndexOf(1))
    expect(order.slice(0, firstDone).includes(0) && order.slice(0, firstDone).includes(1)).toBe(true)
  })

  it('runs no exit handler inside run(): a handler may kick a vCPU started right after', async () => {
    // vCPU 1 never gets a SIPI (in-kernel LAPIC: it waits in KVM_RUN); vCPU 0's first exit kicks both.
    guest = realModeGuest('out 0x10, al\n1: jmp 1b', { irqchip: true })
    const vcpus = [0, 1].map((id) => guest!.vm.createVcpu(id))
    realMode(vcpus[0]!)
    let calledDuringRun = false
    let inRun = false
    const h = handler({
      pioOut: () => {
        calledDuringRun ||= inRun
        for (const v of vcpus) v.kick()
      },
    })
    const runs: Promise<VcpuExit>[] = []
    for (const v of vcpus) {
      inRun = true
      runs.push(v.run(h))
      inRun = false
    }
    expect(await Promise.all(runs)).toEqual([{ kind: 'kick' }, { kind: 'kick' }])
    expect(calledDuringRun).toBe(false)
  })

  it('pauses a spinning vCPU and resumes it where it was', async () => {
    guest = realModeGuest('xor eax, eax\n1: inc eax\njmp 1b')
    const vcpu = guest.vm.createVcpu(0)
    realMode(vcpu)
    const h = handler({})
    let run = vcpu.run(h)
    await new Promise((r) => setTimeout(r, 100))
    vcpu.kick()
    expect(await run).toEqual({ kind: 'kick' })
    const first = vcpu.getRegs()
    expect(first.rax).toBeGreaterThan(0n)
    expect(first.rip >= BigInt(LOAD) && first.rip < BigInt(LOAD + 16)).toBe(true)
    run = vcpu.run(h)
    await new Promise((r) => setTimeout(r, 100))
    vcpu.kick()
    expect(await run).toEqual({ kind: 'kick' })
    expect(vcpu.getRegs().rax).toBeGreaterThan(first.rax)
  })

  it('surfaces an emulation failure with the instruction bytes', async () => {
    // On hosts whose KVM emulates kernel-mode code (kvm_pvm), popcnt is not in the emulator.
    // Where the CPU runs it natively the guest reaches the out instead: both are checked.
    guest = realModeGuest('popcnt ax, bx\nout 0x10, al\nhlt')
    const vcpu = guest.vm.createVcpu(0)
    realMode(vcpu)
    let outs = 0
    const exit = await vcpu.run(handler({ pioOut: () => outs++ }))
    if (exit.kind === 'internal-error') {
      expect(exit.suberror).toBe(1)
      expect([...exit.instructionBytes.subarray(0, 4)]).toEqual([0xf3, 0x0f, 0xb8, 0xc3])
      expect(outs).toBe(0)
    } else {
      expect(exit).toEqual({ kind: 'hlt' })
      expect(outs).toBe(1)
    }
  })

  it('injects an exception into the guest (#BP through the real-mode IVT)', async () => {
    // IVT[3] -> 0000:0x1100, whose handler reports on port 0x33 and returns.
    guest = realModeGuest(`out 0x10, al\nout 0x11, al\nhlt\n.org 0x100\nout 0x33, al\niret`)
    new DataView(guest.ram.buffers[0]!).setUint32(3 * 4, 0x1100, true)
    const vcpu = guest.vm.createVcpu(0)
    realMode(vcpu)
    const ports: number[] = []
    await vcpu.run(
      handler({
        pioOut: (port, _d, v) => {
          ports.push(port)
          if (port === 0x10) v.injectException(3)
        },
      }),
    )
    expect(ports).toEqual([0x10, 0x33, 0x11])
  })

  it('stops the vCPU and rejects run() when a device handler throws; the VM stays usable', async () => {
    guest = realModeGuest('out 0x10, al\nout 0x11, al\nhlt')
    const vcpu = guest.vm.createVcpu(0)
    realMode(vcpu)
    await expect(
      vcpu.run(
        handler({
          pioOut: () => {
            throw new Error('device bug')
          },
        }),
      ),
    ).rejects.toThrow('device bug')
    expect(vcpu.state).toBe('idle')
    const ports: number[] = []
    await vcpu.run(handler({ pioOut: (p) => ports.push(p) }))
    expect(ports).toEqual([0x11])
  })

  it('signals an ioeventfd without an exit and injects an interrupt through an irqfd', async () => {
    guest = realModeGuest(
      `out 0x30, al
       out 0x30, al
       out 0x30, al
       mov al, 0x11
       out 0x20, al
       mov al, 0x20
       out 0x21, al
       mov al, 0x04
       out 0x21, al
       mov al, 0x01
       out 0x21, al
       mov al, 0xdf
       out 0x21, al
       out 0x10, al
       sti
       1: hlt
       jmp 1b
       .org 0x200
       mov al, 0x20
       out 0x20, al
       out 0x11, al
       iret`,
      { irqchip: true },
    )
    const vm = guest.vm
    // IVT[0x25] (PIC base 0x20 + IRQ 5) -> 0000:0x1200 (8259A ICW2 sets the vector base).
    new DataView(guest.ram.buffers[0]!).setUint32(0x25 * 4, 0x1200, true)
    const notify = vm.createEventFd()
    vm.ioeventfd({ eventfd: notify, address: 0x30, length: 1, pio: true })
    const irq = vm.createEventFd()
    vm.irqfd({ eventfd: irq, gsi: 5 })
    const vcpu = vm.createVcpu(0)
    realMode(vcpu)
    const ports: number[] = []
    const exit = await vcpu.run(
      handler({
        pioOut: (port, _d, v) => {
          ports.push(port)
          if (port === 0x10) irq.write(1n) // the guest is ready: raise IRQ 5 through the irqfd
          if (port === 0x11) v.kick()
        },
      }),
    )
    expect(exit).toEqual({ kind: 'kick' })
    expect(ports).toEqual([0x10, 0x11]) // port 0x30 never reached user space
    expect(notify.read()).toBe(3n)
  })

  it('disposes a VM with a running vCPU: run() resolves as disposed, threads are joined, twice is harmless', async () => {
    guest = realModeGuest('1: jmp 1b')
    const vcpu = guest.vm.createVcpu(0)
    realMode(vcpu)
    const run = vcpu.run(handler({}))
    await new Promise((r) => setTimeout(r, 50))
    const ram = guest.ram
    guest.dispose()
    guest.dispose()
    guest = undefined
    expect(await run).toEqual<VcpuExit>({ kind: 'disposed' })
    expect(ram.buffers[0]!.byteLength).toBe(0) // detached: no view can reach unmapped memory
    const threads = readdirSync('/proc/self/task').map((t) =>
      readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim(),
    )
    expect(threads).not.toContain('vcpu0')
    expect(() => vcpu.getRegs()).toThrow(/disposed/)
  })
})

// A machine reset in place (QMP system_reset; QEMU's qemu_system_reset): the machine as it was
// the moment its loaders finished, without building it again. What that takes:
//  - guest RAM: zeroed, then the loaders' bytes put back. The loaders are not run again: some
//    have effects that may happen once (a boot input handed to the kernel loader, CPUID set after
//    the vCPU ran, which KVM refuses when it differs); what they wrote is recorded while they run
//    (every write, every writable view they take) and copied once they are done. QEMU keeps its
//    ROM blobs for reset the same way (rom_reset), rather than reading the files again.
//  - vCPUs: the whole state they had after load (registers, segments, FPU, LAPIC, MSRs, MP state,
//    events), CPUID left as set; without an in-kernel irqchip (no LAPIC to read) registers,
//    segments and FPU; on hypervisors without x86 state, registers and segments.
//  - the in-kernel PIC/IOAPIC and PIT (hypervisor features x86.irqchip / x86.pit): as after load.
//  - components: Resettable.reset (virtio devices to status 0); Pausable ones paused around it.
// Not reset: the guest clock (kvmclock's base runs on, as a rebooted PC's RTC does), components
// without a reset hook (their registers stay as the guest left them: the guest's drivers program
// them again at boot), hot-plugged components stay plugged (as in QEMU).
import { guestAddress } from '../address.js'
import type { RamMapping, Vcpu, VirtualMachine } from '../hypervisor.js'
import type { Fpu, X86VcpuState } from '../hypervisor-features.js'
import type { GuestMemory } from '../memory/guest-memory.js'

/** [start, end) guest physical ranges, as recorded. */
type Ranges = [number, number][]

const WRITERS: Record<string, (args: unknown[]) => number> = {
  write: (a) => (a[1] as Uint8Array).length,
  writeU8: () => 1,
  writeU16: () => 2,
  writeU32: () => 4,
  writeU64: () => 8,
  writeObj: (a) => (a[1] as { size: number }).size,
  // A view can be written through: the whole of it counts.
  slice: (a) => a[1] as number,
}

/** `memory` as loaders see it: every range they write, or take a view of, is added to `touched`. */
export function recordingMemory<M extends GuestMemory>(memory: M, touched: Ranges): M {
  return new Proxy(memory, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown
      if (typeof v !== 'function') return v
      const size = typeof prop === 'string' ? WRITERS[prop] : undefined
      if (!size) return v.bind(target)
      return (...args: unknown[]) => {
        const start = Number(args[0])
        touched.push([start, start + size(args)])
        return v.apply(target, args)
      }
    },
  })
}

function merged(ranges: Ranges): Ranges {
  const out: Ranges = []
  for (const [s, e] of [...ranges].sort((a, b) => a[0] - b[0])) {
    const last = out.at(-1)
    if (last && s <= last[1]) last[1] = Math.max(last[1], e)
    else if (e > s) out.push([s, e])
  }
  return out
}

type VcpuBoot =
  | { full: X86VcpuState }
  | { regs: ReturnType<Vcpu['getRegs']>; sregs: ReturnType<Vcpu['getSregs']>; fpu?: Fpu }

/** What the machine looked like when its loaders were done. */
export class BootImage {
  private constructor(
    private readonly pieces: readonly { address: number; bytes: Uint8Array }[],
    private readonly vcpus: readonly VcpuBoot[],
    private readonly irqchip: Uint8Array | undefined,
    private readonly pit: Uint8Array | undefined,
  ) {}

  /** Copies the touched ranges and reads every vCPU's and the VM's state (before any vCPU runs). */
  static capture(
    memory: GuestMemory,
    touched: Ranges,
    vcpus: readonly Vcpu[],
    vm: VirtualMachine,
  ): BootImage {
    const pieces = merged(touched).map(([s, e]) => {
      const bytes = new Uint8Array(e - s)
      memory.read(guestAddress(s), bytes)
      return { address: s, bytes }
    })
    const states = vcpus.map((v): VcpuBoot => {
      const x86 = v.x86
      if (x86 && vm.x86?.irqchip) {
        const { cpuid: _cpuid, tscKhz: _tsc, ...full } = x86.getState()
        return { full }
      }
      // Without an in-kernel irqchip there is no LAPIC to read (KVM_GET_LAPIC fails), so not the
      // whole state: registers, segments and the FPU.
      return { regs: v.getRegs(), sregs: v.getSregs(), ...(x86 ? { fpu: x86.getFpu() } : {}) }
    })
    return new BootImage(pieces, states, vm.x86?.irqchip?.get(), vm.x86?.pit?.get())
  }

  /** Bytes kept for a reset (what the loaders wrote). */
  get bytes(): number {
    return this.pieces.reduce((n, p) => n + p.bytes.length, 0)
  }

  /** Puts it back: every vCPU out of the guest, every component quiet. */
  apply(memory: GuestMemory, ram: RamMapping, vcpus: readonly Vcpu[], vm: VirtualMachine): void {
    zero(ram)
    for (const p of this.pieces) memory.write(guestAddress(p.address), p.bytes)
    vcpus.forEach((v, i) => {
      const s = this.vcpus[i]
      if (!s) return
      if ('full' in s) v.x86!.setState(structuredClone(s.full))
      else {
        v.setSregs(structuredClone(s.sregs))
        v.setRegs(structuredClone(s.regs))
        if (s.fpu) v.x86?.setFpu(structuredClone(s.fpu))
      }
    })
    if (this.irqchip) vm.x86?.irqchip?.set(this.irqchip)
    if (this.pit) vm.x86?.pit?.set(this.pit)
  }
}

const PAGE_WORDS = 4096 / 4

/**
 * Zeroes guest RAM page by page, writing only pages that hold something: a page the guest never
 * touched stays unallocated on the host (reading it maps the shared zero page), so a reset does
 * not make the whole of guest RAM resident.
 */
function zero(ram: RamMapping): void {
  for (const buffer of ram.buffers) {
    const words = new Int32Array(buffer, 0, Math.floor(buffer.byteLength / 4))
    for (let p = 0; p < words.length; p += PAGE_WORDS) {
      const end = Math.min(p + PAGE_WORDS, words.length)
      for (let i = p; i < end; i++)
        if (words[i] !== 0) {
          words.fill(0, p, end)
          break
        }
    }
  }
}

// Shared set-up for tests that run tiny guests on the real /dev/kvm.
import { type ExitHandler, Kvm, type Vcpu, type VcpuExit, type Vm } from '../src/index.js'
import { assemble } from '../src/testing.js'

/** Why KVM tests must skip here, printed once; undefined where /dev/kvm is usable. */
export const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[kvm tests skipped] ${kvmUnavailable}`)

export const LOAD = 0x1000

export interface Guest {
  kvm: Kvm
  vm: Vm
  ram: ReturnType<Vm['mapMemory']>
  mem: Uint8Array
  dispose(): void
}

/** A VM with `memSize` bytes of RAM at guest address 0 and `code` loaded at `load`. */
export function makeGuest(
  code: Uint8Array,
  opts: { memSize?: number; load?: number; irqchip?: boolean } = {},
): Guest {
  const kvm = Kvm.open()
  const vm = kvm.createVm()
  if (opts.irqchip) vm.createIrqchip()
  const ram = vm.mapMemory(opts.memSize ?? 0x100000)
  const mem = new Uint8Array(ram.buffers[0]!)
  mem.set(code, opts.load ?? LOAD)
  vm.setUserMemoryRegion({ slot: 0, guestAddress: 0, size: ram.size, ram })
  return {
    kvm,
    vm,
    ram,
    mem,
    dispose() {
      vm.dispose()
      kvm.close()
    },
  }
}

/** Puts a vCPU in real mode at 0000:rip (cs base 0), interrupts off. */
export function realMode(
  vcpu: Vcpu,
  rip = LOAD,
  regs: Partial<Record<'rax' | 'rbx' | 'rcx' | 'rdx', bigint>> = {},
): void {
  const s = vcpu.getSregs()
  s.cs.base = 0n
  s.cs.selector = 0
  vcpu.setSregs(s)
  vcpu.setRegs({ ...vcpu.getRegs(), ...regs, rip: BigInt(rip), rflags: 2n })
}

export function realModeGuest(source: string, opts: { memSize?: number; irqchip?: boolean } = {}) {
  return makeGuest(assemble(`.code16\n${source}`), opts)
}

/** An ExitHandler from a few functions; unhandled I/O fails the test, hlt stops. */
export function handler(h: Partial<ExitHandler<Vcpu>>): ExitHandler<Vcpu> {
  const unexpected = (what: string) => (addr: number) => {
    throw new Error(`unexpected ${what} at 0x${addr.toString(16)}`)
  }
  return {
    pioIn: h.pioIn ?? unexpected('port read'),
    pioOut: h.pioOut ?? unexpected('port write'),
    mmioRead: h.mmioRead ?? unexpected('MMIO read'),
    mmioWrite: h.mmioWrite ?? unexpected('MMIO write'),
    onExit: h.onExit ?? ((e: VcpuExit) => (e.kind === 'hlt' ? 'stop' : 'stop')),
  }
}

export function u32le(data: Uint8Array): number {
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0, true)
}

// @vmm/kvm as core's Hypervisor: what `vmm run` and embedders use through `hypervisorProvider`.
// Vcpu already has core's shape; the VM needs only a translation of memory calls.
import type {
  Vcpu as CoreVcpu,
  Hypervisor,
  HypervisorProvider,
  MemorySlot,
  RamMapping,
  VirtualMachine,
} from '@vmm/core'
import type { CpuidEntry } from './types.js'
import { type GuestRam, Kvm, type Vm } from './vm.js'

/** Addresses KVM needs for Intel's real-mode TSS and identity map, in the 32-bit MMIO gap below
 * 4 GiB (the same places QEMU and Firecracker choose; Documentation/virt/kvm/api.rst). */
const TSS_ADDRESS = 0xfffb_d000
const IDENTITY_MAP_ADDRESS = 0xfffb_c000

export class KvmVirtualMachine implements VirtualMachine {
  private readonly rams = new WeakSet<GuestRam>()

  constructor(readonly vm: Vm) {}

  mapRam(size: number): RamMapping {
    const ram = this.vm.mapMemory(size)
    this.rams.add(ram)
    return ram
  }

  setMemorySlot(slot: MemorySlot): void {
    const ram = slot.mapping as GuestRam
    if (!this.rams.has(ram))
      throw new TypeError(`memory slot ${slot.slot}: its mapping was not made by this VM's mapRam()`)
    this.vm.setUserMemoryRegion({
      slot: slot.slot,
      guestAddress: slot.guestAddress,
      size: slot.size,
      ram,
      offset: slot.mappingOffset,
      readonly: slot.readOnly,
    })
  }

  /** KVM_CREATE_IRQCHIP (PIC, IOAPIC, LAPICs) and the in-kernel PIT, with the TSS and identity map
   * pages KVM wants on Intel hosts before the first vCPU runs. */
  createIrqchip(): void {
    this.vm.setTssAddr(TSS_ADDRESS)
    this.vm.setIdentityMapAddr(IDENTITY_MAP_ADDRESS)
    this.vm.createIrqchip()
    this.vm.createPit2()
  }

  setIrqLine(irq: number, level: boolean): void {
    this.vm.irqLine(irq, level)
  }

  /** KVM_GET_SUPPORTED_CPUID: the table a board starts from when it sets each vCPU's CPUID. */
  supportedCpuid(): CpuidEntry[] {
    return this.vm.kvm.supportedCpuid()
  }

  createVcpu(id: number): CoreVcpu {
    return this.vm.createVcpu(id)
  }

  dispose(): void {
    this.vm.dispose()
  }
}

export class KvmHypervisor implements Hypervisor {
  readonly name = 'kvm'
  constructor(readonly kvm: Kvm) {}

  createVm(): KvmVirtualMachine {
    return new KvmVirtualMachine(this.kvm.createVm())
  }

  dispose(): void {
    this.kvm.close()
  }
}

/** Opens /dev/kvm for `vmm run`; a KvmUnavailableError says why when it cannot be used. */
export const hypervisorProvider: HypervisorProvider = {
  open: () => new KvmHypervisor(Kvm.open(process.env.VMM_KVM_DEVICE ?? '/dev/kvm')),
}

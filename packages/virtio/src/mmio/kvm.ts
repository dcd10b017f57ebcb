import type { VirtualMachine } from '@vmm/core'
import { KvmVirtualMachine, type Vm } from '@vmm/kvm'
import type { Disposable, DoorbellMatch, InterruptTrigger, VirtioAccelerator } from './accelerator.js'

/**
 * VirtioAccelerator on /dev/kvm: a queue doorbell is an ioeventfd (the guest's write completes in
 * the kernel and wakes an eventfd the event loop watches) and the interrupt is an irqfd (an eventfd
 * write raises the GSI in the in-kernel irqchip). Each is used only where KVM_CHECK_EXTENSION says so.
 */
export class KvmAccelerator implements VirtioAccelerator {
  constructor(private readonly vm: Vm) {}

  notifier(
    address: number,
    queue: number,
    onNotify: () => void,
    match: DoorbellMatch = { length: 4, datamatch: true },
  ): Disposable | undefined {
    if (this.vm.checkExtension('Ioeventfd') === 0) return undefined
    const eventfd = this.vm.createEventFd()
    // Without KVM_CAP_IOEVENTFD_ANY_LENGTH the length must be the access width exactly.
    const registration = {
      eventfd,
      address,
      length: match.length,
      ...(match.datamatch ? { datamatch: BigInt(queue) } : {}),
    }
    try {
      this.vm.ioeventfd(registration)
    } catch {
      // EEXIST: the guest put two devices' doorbells at one address (a BAR over another). The
      // write then traps, and the transport decodes it as before.
      eventfd.close()
      return undefined
    }
    eventfd.onSignal(onNotify)
    return {
      dispose: () => {
        this.vm.ioeventfd({ ...registration, deassign: true })
        eventfd.close()
      },
    }
  }

  interrupt(gsi: number): InterruptTrigger | undefined {
    if (this.vm.checkExtension('Irqfd') === 0) return undefined
    const eventfd = this.vm.createEventFd()
    this.vm.irqfd({ eventfd, gsi })
    return {
      trigger: () => eventfd.write(1n),
      dispose: () => {
        this.vm.irqfd({ eventfd, gsi, deassign: true })
        eventfd.close()
      },
    }
  }
}

/** The accelerator for a machine's hypervisor VM, or undefined where it has none (the test hypervisor). */
export function acceleratorFor(vm: VirtualMachine): VirtioAccelerator | undefined {
  return vm instanceof KvmVirtualMachine ? new KvmAccelerator(vm.vm) : undefined
}

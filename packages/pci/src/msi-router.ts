// Where MSI and MSI-X messages go. A device model decides *whether* a vector fires (enable, masks,
// pending bits); an MsiRouter makes the message reach a vCPU. Where the hypervisor has a GSI
// routing table and interrupt triggers (core's vm.msiRouting and vm.notifiers; on KVM
// KVM_SET_GSI_ROUTING and irqfd, Documentation/virt/kvm/api.rst 4.52 and 4.75), that is one GSI
// per vector, routed to the message's address/data, with a trigger on that GSI so a signal is one
// eventfd write. Our hosts have KVM_CAP_IRQ_ROUTING and irqfd but not KVM_CAP_SIGNAL_MSI, so this
// is the only way in. Elsewhere (the test hypervisor) RecordingMsiRouter keeps what would be sent.
import type { GsiRoute, GsiRouting, InterruptTrigger, VirtualMachine, VmNotifiers } from '@vmm/core'

/** An MSI message: the address the device writes and the data it writes there (PCI 3.0 §6.8). */
export interface MsiMessage {
  readonly address: number
  readonly data: number
}

/** One vector's path to the CPUs. */
export interface MsiVector {
  /** The GSI it uses, for messages and tests. */
  readonly gsi: number
  /** The guest programmed a new address/data (applied before the next signal). */
  update(message: MsiMessage): void
  /** Delivers the current message now. */
  signal(): void
  release(): void
}

export interface MsiRouter {
  readonly name: string
  allocate(): MsiVector
  dispose(): void
}

/** The first GSI after the IOAPIC's 24 inputs; MSI routes start here. */
export const FIRST_MSI_GSI = 24

/**
 * KVM_SET_GSI_ROUTING replaces the whole table, including the default routes KVM_CREATE_IRQCHIP
 * set up, so every table we install starts with those again: GSI 0-15 to the PIC (master 0-7,
 * slave 8-15) and the IOAPIC, GSI 16-23 to the IOAPIC (Linux virt/kvm/irqchip.c,
 * kvm_setup_default_irq_routing).
 */
export function defaultIrqchipRoutes(): GsiRoute[] {
  const routes: GsiRoute[] = []
  for (let gsi = 0; gsi < 24; gsi++) {
    routes.push({ gsi, type: 'irqchip', irqchip: 2, pin: gsi })
    if (gsi < 16) routes.push({ gsi, type: 'irqchip', irqchip: gsi < 8 ? 0 : 1, pin: gsi % 8 })
  }
  return routes
}

/** One GSI per vector in the hypervisor's routing table, signalled by an interrupt trigger. */
export class GsiMsiRouter implements MsiRouter {
  /** The name logs and tests know it by (it was KVM's only before core had the parts). */
  readonly name = 'kvm-irqfd'
  private readonly routes = new Map<number, MsiMessage>()
  private readonly vectors = new Set<MsiVector>()
  private readonly freeGsis: number[] = []
  private nextGsi = FIRST_MSI_GSI

  constructor(
    private readonly routing: GsiRouting,
    private readonly notifiers: VmNotifiers,
  ) {}

  /** The table as installed last (for tests and debugging). */
  table(): GsiRoute[] {
    const t = defaultIrqchipRoutes()
    for (const [gsi, m] of [...this.routes].sort((a, b) => a[0] - b[0])) {
      t.push({
        gsi,
        type: 'msi',
        addressLo: m.address % 2 ** 32,
        addressHi: Math.floor(m.address / 2 ** 32),
        data: m.data,
      })
    }
    return t
  }

  private commit(): void {
    this.routing.setRoutes(this.table())
  }

  allocate(): MsiVector {
    const gsi = this.freeGsis.pop() ?? this.nextGsi++
    let trigger: InterruptTrigger | undefined
    let pending: MsiMessage | undefined
    const router = this
    const vector: MsiVector = {
      gsi,
      update(message) {
        const cur = router.routes.get(gsi)
        if (cur && cur.address === message.address && cur.data === message.data) {
          pending = undefined
          return
        }
        pending = message
      },
      signal() {
        if (pending) {
          // Route first, then attach the trigger: an irqfd on a GSI with no route would drop signals.
          router.routes.set(gsi, pending)
          pending = undefined
          router.commit()
        }
        if (!router.routes.has(gsi)) return
        if (!trigger) {
          trigger = router.notifiers.interrupt(gsi)
          if (!trigger) throw new Error(`MSI on GSI ${gsi}: the hypervisor has no interrupt trigger`)
        }
        trigger.trigger()
      },
      release() {
        if (!router.vectors.delete(vector)) return
        trigger?.dispose()
        trigger = undefined
        if (router.routes.delete(gsi)) router.commit()
        router.freeGsis.push(gsi)
      },
    }
    this.vectors.add(vector)
    return vector
  }

  dispose(): void {
    for (const v of [...this.vectors]) v.release()
  }
}

/** What a RecordingMsiRouter saw delivered. */
export interface MsiDelivery {
  readonly gsi: number
  readonly address: number
  readonly data: number
}

/** Keeps every delivery instead of sending it: for the test hypervisor and unit tests. */
export class RecordingMsiRouter implements MsiRouter {
  readonly name = 'recording'
  readonly deliveries: MsiDelivery[] = []
  readonly routes = new Map<number, MsiMessage>()
  private nextGsi = FIRST_MSI_GSI

  allocate(): MsiVector {
    const gsi = this.nextGsi++
    const routes = this.routes
    const deliveries = this.deliveries
    let message: MsiMessage = { address: 0, data: 0 }
    return {
      gsi,
      update(m) {
        message = m
        routes.set(gsi, m)
      },
      signal() {
        deliveries.push({ gsi, address: message.address, data: message.data })
      },
      release() {
        routes.delete(gsi)
      },
    }
  }

  dispose(): void {}
}

/**
 * The router for a machine's VirtualMachine: GSI routing and interrupt triggers where its
 * hypervisor has both, else a recording router (the test hypervisor).
 */
export function msiRouterFor(vm: VirtualMachine): MsiRouter {
  if (vm.msiRouting && vm.notifiers) return new GsiMsiRouter(vm.msiRouting, vm.notifiers)
  return new RecordingMsiRouter()
}

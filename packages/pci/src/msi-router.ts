// Where MSI and MSI-X messages go. A device model decides *whether* a vector fires (enable, masks,
// pending bits); an MsiRouter makes the message reach a vCPU. On KVM that is one GSI per vector,
// routed with KVM_SET_GSI_ROUTING to the message's address/data, and an irqfd on that GSI so a
// signal is one eventfd write (Documentation/virt/kvm/api.rst 4.52 KVM_SET_GSI_ROUTING, 4.75
// KVM_IRQFD). Our hosts have KVM_CAP_IRQ_ROUTING and irqfd but not KVM_CAP_SIGNAL_MSI, so this is
// the only way in. The test hypervisor has neither: RecordingMsiRouter keeps what would be sent.
import type { VirtualMachine } from '@vmm/core'

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

/** An EventFd of @vmm/kvm, structurally (pci does not import the native package). */
export interface KvmEventFd {
  write(value?: bigint): void
  close(): void
}

export type KvmGsiRoute =
  | { gsi: number; type: 'irqchip'; irqchip: number; pin: number }
  | { gsi: number; type: 'msi'; addressLo: number; addressHi: number; data: number }

/** What KvmMsiRouter needs from @vmm/kvm's Vm. */
export interface KvmRoutingVm<E extends KvmEventFd = KvmEventFd> {
  setGsiRouting(entries: readonly KvmGsiRoute[]): void
  createEventFd(): E
  irqfd(o: { eventfd: E; gsi: number; deassign?: boolean }): void
}

/** The first GSI after the IOAPIC's 24 inputs; MSI routes start here. */
export const FIRST_MSI_GSI = 24

/**
 * KVM_SET_GSI_ROUTING replaces the whole table, including the default routes KVM_CREATE_IRQCHIP
 * set up, so every table we install starts with those again: GSI 0-15 to the PIC (master 0-7,
 * slave 8-15) and the IOAPIC, GSI 16-23 to the IOAPIC (Linux virt/kvm/irqchip.c,
 * kvm_setup_default_irq_routing).
 */
export function defaultIrqchipRoutes(): KvmGsiRoute[] {
  const routes: KvmGsiRoute[] = []
  for (let gsi = 0; gsi < 24; gsi++) {
    routes.push({ gsi, type: 'irqchip', irqchip: 2, pin: gsi })
    if (gsi < 16) routes.push({ gsi, type: 'irqchip', irqchip: gsi < 8 ? 0 : 1, pin: gsi % 8 })
  }
  return routes
}

export class KvmMsiRouter<E extends KvmEventFd = KvmEventFd> implements MsiRouter {
  readonly name = 'kvm-irqfd'
  private readonly routes = new Map<number, MsiMessage>()
  private readonly vectors = new Set<MsiVector>()
  private readonly freeGsis: number[] = []
  private nextGsi = FIRST_MSI_GSI

  constructor(private readonly vm: KvmRoutingVm<E>) {}

  /** The table as installed last (for tests and debugging). */
  table(): KvmGsiRoute[] {
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
    this.vm.setGsiRouting(this.table())
  }

  allocate(): MsiVector {
    const gsi = this.freeGsis.pop() ?? this.nextGsi++
    const eventfd = this.vm.createEventFd()
    let assigned = false
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
          // Route first, then attach the irqfd: an irqfd on a GSI with no route would drop signals.
          router.routes.set(gsi, pending)
          pending = undefined
          router.commit()
        }
        if (!router.routes.has(gsi)) return
        if (!assigned) {
          router.vm.irqfd({ eventfd, gsi })
          assigned = true
        }
        eventfd.write(1n)
      },
      release() {
        if (!router.vectors.delete(vector)) return
        if (assigned) router.vm.irqfd({ eventfd, gsi, deassign: true })
        eventfd.close()
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

function isKvmRoutingVm(v: unknown): v is KvmRoutingVm {
  const x = v as Partial<KvmRoutingVm> | null
  return (
    typeof x?.setGsiRouting === 'function' &&
    typeof x.createEventFd === 'function' &&
    typeof x.irqfd === 'function'
  )
}

/**
 * The router for a machine's VirtualMachine: GSI routing + irqfd when it is @vmm/kvm's (which
 * exposes its Vm as `.vm`), else a recording router (the test hypervisor).
 */
export function msiRouterFor(vm: VirtualMachine): MsiRouter {
  const inner = (vm as { vm?: unknown }).vm
  if (isKvmRoutingVm(inner)) return new KvmMsiRouter(inner)
  if (isKvmRoutingVm(vm)) return new KvmMsiRouter(vm)
  return new RecordingMsiRouter()
}

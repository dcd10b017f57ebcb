// The container's microVM as a manifest object (docs/embedding.md, Machine.fromObject): the
// micro board (examples/micro.yaml's layout and command line), a serial console logging to the
// state directory, virtio-vsock to the agent, one virtio-9p device per shared directory, and a
// virtio-net device when the container joins a network namespace (network.ts made its TAP there).
import type { VmSize } from './config.js'
import type { Share } from './mounts.js'

export interface VmPlan {
  size: VmSize
  vmlinux: string
  initrd: string
  consoleLog: string
  vsockPath: string
  shares: readonly Share[]
  /** The container's network: a TAP fd the sandbox inherited, and the MAC of the namespace's interface. */
  net?: { tap: string; fd: number; mac: string }
}

/** Free IRQs of the micro board (4 serial, 1 i8042, 8 RTC are taken). */
const IRQS = [5, 6, 7, 9, 10, 11, 12, 13, 14, 15]
const MMIO_BASE = 0xc000_0000
/** Guest CID of the container VM; each VM has its own vsock device, so every VM can use 3. */
export const GUEST_CID = 3

// As examples/micro.yaml (its comments say why each is there), quiet: each console byte is a
// trapped access on kvm_pvm hosts, and the agent reports over vsock, not the console.
const CMDLINE =
  'console=ttyS0 loglevel=4 quiet reboot=k panic=1 acpi=off pci=off nomodule i8042.noaux i8042.nomux ' +
  'i8042.nopnp i8042.dumbkbd swiotlb=noforce cryptomgr.notests noxsave clearcpuid=cx16,popcnt'

export function vmManifest(plan: VmPlan): Record<string, unknown> {
  const maxShares = IRQS.length - 1 - (plan.net ? 1 : 0) // vsock and the net device take one each
  if (plan.shares.length > maxShares)
    throw new Error(`${plan.shares.length} shared directories: at most ${maxShares} fit on the micro board`)
  const slot = (i: number) => ({ regs: MMIO_BASE + 0x1000 * (i + 1), irq: IRQS[i]! })
  const components: Record<string, unknown> = {
    kernel: { type: 'linux', kernel: plan.vmlinux, initrd: plan.initrd, cmdline: CMDLINE },
    serial: { type: 'serial', console: 'file', path: plan.consoleLog, resources: { port: 0x3f8, irq: 4 } },
    i8042: { type: 'i8042', resources: { ports: 0x60, irq: 1 } },
    rtc: { type: 'cmos-rtc', resources: { ports: 0x70, irq: 8 } },
    vsock: { type: 'virtio-vsock', cid: GUEST_CID, path: plan.vsockPath, resources: slot(0) },
  }
  plan.shares.forEach((s, i) => {
    components[`fs-${s.tag}`] = {
      type: 'virtio-9p',
      tag: s.tag,
      path: s.hostPath,
      readonly: s.readonly,
      resources: slot(i + 1),
    }
  })
  if (plan.net)
    components.net = {
      type: 'virtio-net',
      tap: plan.net.tap,
      fd: plan.net.fd,
      mac: plan.net.mac,
      resources: slot(plan.shares.length + 1),
    }
  return {
    machine: {
      memory: `${plan.size.memoryMiB}MiB`,
      vcpus: plan.size.vcpus,
      irqchip: true,
      layout: { mmio: { base: MMIO_BASE, size: 0x3ec0_0000 } },
    },
    components,
  }
}

// `pci-testdev`: a small PCI device for tests and bring-up, in the spirit of QEMU's "edu" device:
// registers in a 32-bit memory BAR and again in an I/O BAR, an MSI-X table in a 64-bit BAR, MSI,
// and INTx, so a guest (or a test) can exercise every path a real driver takes.
//
// BAR0 (4 KiB memory) and BAR1 (32 ports) hold the same registers:
//   0x00 R  ID, "PCIT" (0x54494350)
//   0x04 RW scratch
//   0x08 R  ~scratch (a liveness check: the device computes it)
//   0x0c W  raise interrupt <value> (MSI-X, else MSI, else INTx); R: interrupts raised so far
//   0x10 W  lower INTx (the driver's acknowledgement)
//   0x14 R  how the last interrupt went: 0 none, 1 INTx, 2 MSI, 3 MSI-X
// BAR2 (4 KiB, 64-bit): the MSI-X table at 0, the PBA at 0x800.
import type { MmioDevice } from '@vmm/core'
import { readLe, writeLe } from '../../config-space.js'
import { type InterruptPath, PciDevice } from '../../device.js'

export const TESTDEV_ID = 0x54494350
export const TESTDEV_VENDOR = 0x1234
export const TESTDEV_DEVICE = 0x7e57

export interface PciTestDeviceConfig {
  bus: string
  slot?: number
  vendorId: number
  deviceId: number
  msixVectors: number
  msiVectors: number
}

const PATH_CODE: Record<InterruptPath, number> = { none: 0, intx: 1, msi: 2, msix: 3 }

export class PciTestDevice extends PciDevice {
  scratch = 0
  raised = 0
  lastPath: InterruptPath = 'none'

  constructor(config: Omit<PciTestDeviceConfig, 'bus' | 'slot'>) {
    super({
      name: 'pci-testdev',
      vendorId: config.vendorId,
      deviceId: config.deviceId,
      classCode: 0x00ff00, // 00 ff: unclassified, "other"
      revision: 1,
      subsystemVendorId: config.vendorId,
      subsystemId: config.deviceId,
      interruptPin: 1,
      pcie: true,
    })
    const regs: MmioDevice = {
      read: (o, d) => this.regRead(o, d),
      write: (o, d) => this.regWrite(o, d),
    }
    this.addBar(0, { kind: 'memory32', size: 0x1000, device: regs })
    this.addBar(1, { kind: 'io', size: 0x20, device: regs })
    if (config.msixVectors > 0) {
      const msix = this.addMsix(config.msixVectors, 2, 0, 0x800)
      // Prefetchable like the virtio-pci BAR: the host bridge's 64-bit window is a prefetchable one.
      this.addBar(2, { kind: 'memory64', size: 0x1000, prefetchable: true, device: msix.mmio })
    }
    if (config.msiVectors > 0) this.addMsi(config.msiVectors)
  }

  private regRead(offset: number, data: Uint8Array): void {
    const value =
      offset === 0x00
        ? TESTDEV_ID
        : offset === 0x04
          ? this.scratch
          : offset === 0x08
            ? ~this.scratch >>> 0
            : offset === 0x0c
              ? this.raised
              : offset === 0x14
                ? PATH_CODE[this.lastPath]
                : 0
    writeLe(data, value)
  }

  private regWrite(offset: number, data: Uint8Array): void {
    const value = readLe(data)
    if (offset === 0x04) this.scratch = value >>> 0
    else if (offset === 0x0c) {
      this.raised++
      this.lastPath = this.interrupt(value)
    } else if (offset === 0x10) this.setIntx(false)
  }
}

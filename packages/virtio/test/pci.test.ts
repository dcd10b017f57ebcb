// The virtio-pci modern transport (§4.1) driven from the driver's side: configuration space through
// 0xCF8/0xCFC, the structures in BAR 0, MSI-X through a recording router, INTx + ISR without it.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CapabilityId, Command, FIRST_MSI_GSI, Reg } from '@vmm/pci'
import { describe, expect, it } from 'vitest'
import type { DeviceContext, VirtioDevice } from '../src/device.js'
import { BlockDevice } from '../src/devices/block/device.js'
import { RngDevice } from '../src/devices/rng/device.js'
import type { Disposable, DoorbellMatch, VirtioAccelerator } from '../src/mmio/accelerator.js'
import {
  CommonCfg,
  IsrBit,
  Layout,
  PciCapType,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_VENDOR,
} from '../src/pci/transport.js'
import { DeviceType, Feature, Status } from '../src/spec.js'
import { pciRig } from './pci-driver.js'

/** A device that records what the transport does to it and can change its configuration. */
class FakeDevice implements VirtioDevice {
  readonly deviceType = DeviceType.CONSOLE
  readonly queueSizes = [16, 8]
  readonly features = 1n << 1n
  readonly cfg = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8])
  context: DeviceContext | undefined
  resets = 0
  readonly notified: number[] = []
  readConfig(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) data[i] = this.cfg[offset + i] ?? 0
  }
  writeConfig(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length && offset + i < this.cfg.length; i++) this.cfg[offset + i] = data[i]!
  }
  activate(context: DeviceContext): void {
    this.context = context
  }
  notify(index: number): void {
    this.notified.push(index)
  }
  reset(): void {
    this.resets++
    this.context = undefined
  }
}

describe('virtio-pci identity and capabilities (§4.1.2, §4.1.4)', () => {
  it('is 1af4:1044 revision 1 with a subsystem ID and the class of its device type', () => {
    const { driver } = pciRig(new RngDevice())
    expect(driver.cfgRead(Reg.VendorId, 2)).toBe(VIRTIO_PCI_VENDOR)
    expect(driver.cfgRead(Reg.DeviceId, 2)).toBe(0x1040 + DeviceType.ENTROPY)
    expect(driver.cfgRead(Reg.RevisionId, 1)).toBe(1)
    expect(driver.cfgRead(Reg.SubsystemVendorId, 2)).toBe(VIRTIO_PCI_VENDOR)
    expect(driver.cfgRead(Reg.SubsystemId, 2)).toBeGreaterThanOrEqual(0x40)
    expect(driver.cfgRead(Reg.RevisionId) >>> 8).toBe(0x00ff00)
    expect(driver.cfgRead(Reg.InterruptPin, 1)).toBe(1)
    const dir = mkdtempSync(join(tmpdir(), 'vmm-virtio-pci-'))
    try {
      writeFileSync(join(dir, 'disk.img'), new Uint8Array(4096))
      const blk = pciRig(new BlockDevice({ path: join(dir, 'disk.img'), readOnly: true, serial: 'x' }))
      expect(blk.driver.cfgRead(Reg.DeviceId, 2)).toBe(0x1042)
      expect(blk.driver.cfgRead(Reg.RevisionId) >>> 8).toBe(0x010000)
      void blk.transport.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('lists common, notify, ISR, device and PCI-access capabilities after MSI-X, in a 64-bit BAR', () => {
    const { driver } = pciRig(new RngDevice())
    const ids = driver.walkCapabilities()
    expect(ids).toEqual([
      CapabilityId.PciExpress,
      CapabilityId.MsiX,
      ...new Array(5).fill(CapabilityId.VendorSpecific),
    ])
    expect(driver.caps.map((c) => c.type)).toEqual([
      PciCapType.COMMON,
      PciCapType.NOTIFY,
      PciCapType.ISR,
      PciCapType.DEVICE,
      PciCapType.PCI,
    ])
    for (const c of driver.caps.slice(0, 4)) {
      expect(c.bar).toBe(0)
      expect(c.offset % 4).toBe(0)
    }
    expect(driver.cap(PciCapType.COMMON).length).toBe(CommonCfg.SIZE)
    expect(driver.cfgRead(driver.cap(PciCapType.NOTIFY).at + 16)).toBe(Layout.NOTIFY_OFF_MULTIPLIER)
    expect(driver.cfgRead(driver.cap(PciCapType.NOTIFY).at + 2, 1)).toBe(20) // cap_len
    expect(driver.cfgRead(Reg.Bar0) & 0x6).toBe(0x4) // 64-bit memory BAR
    expect(driver.barAddress(0)).toBe(0x4000000000) // in the bridge's 64-bit window
    // MSI-X: 1 config vector + 1 per queue, table and PBA in BAR 0.
    expect((driver.cfgRead(driver.msixCap + 2, 2) & 0x7ff) + 1).toBe(2)
    expect(driver.cfgRead(driver.msixCap + 4)).toBe(Layout.MSIX_TABLE | 0)
    expect(driver.cfgRead(driver.msixCap + 8)).toBe(Layout.MSIX_PBA | 0)
  })

  it('reaches BAR 0 through the PCI configuration access capability (§4.1.4.9)', () => {
    const { driver } = pciRig(new FakeDevice())
    driver.walkCapabilities()
    const at = driver.cap(PciCapType.PCI).at
    // num_queues, 2 bytes at the common configuration's offset 0x12.
    driver.cfgWrite(at + 4, 0, 1)
    driver.cfgWrite(at + 8, Layout.COMMON + CommonCfg.NUM_QUEUES)
    driver.cfgWrite(at + 12, 2)
    expect(driver.cfgRead(at + 16) & 0xffff).toBe(2)
    // device_status written through the window; decoding need not be on.
    driver.cfgWrite(at + 8, Layout.COMMON + CommonCfg.DEVICE_STATUS)
    driver.cfgWrite(at + 12, 1)
    driver.cfgWrite(at + 16, Status.ACKNOWLEDGE)
    driver.enableDecoding()
    expect(driver.status).toBe(Status.ACKNOWLEDGE)
    // Unaligned or odd lengths do nothing.
    driver.cfgWrite(at + 8, Layout.COMMON + CommonCfg.DEVICE_STATUS + 1)
    driver.cfgWrite(at + 12, 2)
    driver.cfgWrite(at + 16, 0)
    expect(driver.status).toBe(Status.ACKNOWLEDGE)
  })
})

describe('virtio-pci common configuration and queues (§4.1.4.3, §4.1.5)', () => {
  it('negotiates, sets up the queue, notifies and delivers the queue vector by MSI-X', () => {
    const { driver, msi, failures, transport } = pciRig(new RngDevice())
    const features = driver.init({ features: 1n << Feature.RING_EVENT_IDX })
    expect(features).toBe((1n << Feature.VERSION_1) | (1n << Feature.RING_EVENT_IDX))
    expect(driver.status).toBe(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK)
    expect(driver.common(CommonCfg.CONFIG_MSIX_VECTOR, 2)).toBe(0)
    driver.setCommon(CommonCfg.QUEUE_SELECT, 0, 2)
    expect(driver.common(CommonCfg.QUEUE_MSIX_VECTOR, 2)).toBe(1)
    expect(driver.common(CommonCfg.QUEUE_ENABLE, 2)).toBe(1)
    expect(driver.common(CommonCfg.QUEUE_DESC, 8)).toBe(driver.queue(0).descTable)
    expect(driver.common(CommonCfg.QUEUE_DRIVER, 4)).toBe(driver.queue(0).availRing)

    const buf = driver.alloc(64)
    const head = driver.queue(0).add([{ address: buf, length: 64, write: true }])
    driver.notify(0)
    expect(driver.queue(0).takeUsed()).toEqual([{ id: head, length: 64 }])
    expect(msi.deliveries).toEqual([{ gsi: FIRST_MSI_GSI, address: 0xfee00000, data: 0x31 }])
    expect(transport.counters).toEqual({ trapped: 1, eventfd: 0 })
    // With MSI-X on, the queue bit is not set in ISR and INTx stays low.
    expect(driver.isr()).toBe(0)
    expect(failures).toEqual([])
  })

  it('keeps a masked vector pending in the PBA and sends it when unmasked (PCI 3.0 §6.8.2.9)', () => {
    const { driver, msi } = pciRig(new RngDevice())
    driver.init()
    driver.setMsixEntry(1, 0xfee00000, 0x31, true)
    driver.queue(0).add([{ address: driver.alloc(8), length: 8, write: true }])
    driver.notify(0)
    expect(msi.deliveries).toEqual([])
    expect(driver.pbaPending(1)).toBe(true)
    driver.setMsixEntry(1, 0xfee00000, 0x31, false)
    expect(driver.pbaPending(1)).toBe(false)
    expect(msi.deliveries.map((d) => d.data)).toEqual([0x31])
    // The function mask holds every vector back the same way.
    driver.setMsix(true, true)
    driver.queue(0).add([{ address: driver.alloc(8), length: 8, write: true }])
    driver.notify(0)
    expect(msi.deliveries).toHaveLength(1)
    expect(driver.pbaPending(1)).toBe(true)
    driver.setMsix(true, false)
    expect(msi.deliveries.map((d) => d.data)).toEqual([0x31, 0x31])
  })

  it('touches no queue and sends no message while Bus Master Enable is off (PCI 3.0 §6.2.2)', () => {
    const device = new FakeDevice()
    const { driver, msi } = pciRig(device)
    driver.init()
    driver.cfgWrite(Reg.Command, Command.MemorySpace, 2) // decoding on, bus mastering off
    driver.notify(1)
    driver.notify(0)
    expect(device.notified).toEqual([])
    device.context!.configChanged()
    device.context!.signalUsed(0)
    expect(msi.deliveries).toEqual([])
    // Bus mastering back on: the doorbells run in the order they rang, then the interrupts go out.
    driver.cfgWrite(Reg.Command, Command.MemorySpace | Command.BusMaster, 2)
    expect(device.notified).toEqual([1, 0])
    expect(msi.deliveries.length).toBeGreaterThan(0)
    // A device reset drops what was held.
    driver.cfgWrite(Reg.Command, Command.MemorySpace, 2)
    driver.notify(0)
    driver.setCommon(CommonCfg.DEVICE_STATUS, 0, 1)
    driver.cfgWrite(Reg.Command, Command.MemorySpace | Command.BusMaster, 2)
    expect(device.notified).toEqual([1, 0])
  })

  it('holds doorbells and MSI-X messages while the machine is paused, also across a bus-master toggle', async () => {
    const device = new FakeDevice()
    const { driver, msi, transport } = pciRig(device)
    driver.init()
    await transport.pause()
    driver.notify(1)
    device.context!.configChanged()
    expect(device.notified).toEqual([])
    expect(msi.deliveries).toEqual([])
    // Bus mastering off and on again while paused releases nothing: the pause still holds.
    driver.cfgWrite(Reg.Command, Command.MemorySpace, 2)
    driver.cfgWrite(Reg.Command, Command.MemorySpace | Command.BusMaster, 2)
    expect(device.notified).toEqual([])
    expect(msi.deliveries).toEqual([])
    transport.resume()
    expect(device.notified).toEqual([1])
    expect(msi.deliveries.length).toBeGreaterThan(0)
  })

  it('sends nothing for VIRTIO_MSI_NO_VECTOR and reads back NO_VECTOR for a vector it lacks', () => {
    const { driver, msi, lines } = pciRig(new RngDevice())
    driver.init()
    driver.setCommon(CommonCfg.QUEUE_SELECT, 0, 2)
    driver.setCommon(CommonCfg.QUEUE_MSIX_VECTOR, 7, 2) // only vectors 0 and 1 exist
    expect(driver.common(CommonCfg.QUEUE_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR)
    driver.setCommon(CommonCfg.CONFIG_MSIX_VECTOR, 2, 2)
    expect(driver.common(CommonCfg.CONFIG_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR)
    driver.queue(0).add([{ address: driver.alloc(8), length: 8, write: true }])
    driver.notify(0)
    expect(driver.queue(0).takeUsed()).toHaveLength(1)
    expect(msi.deliveries).toEqual([])
    expect(lines.some((l) => l.edges > 0)).toBe(false)
  })

  it('uses INTx and ISR when MSI-X is off; reading ISR clears it and lowers the line (§4.1.4.5)', () => {
    const { driver, msi, lines, slot } = pciRig(new RngDevice())
    driver.init({ intx: true })
    const line = lines[slot % 4]! // INTA# of the slot after the swizzle
    driver.queue(0).add([{ address: driver.alloc(8), length: 8, write: true }])
    driver.notify(0)
    expect(msi.deliveries).toEqual([])
    expect(line.level).toBe(true)
    expect(driver.cfgRead(Reg.Status, 2) & 0x8).toBe(0x8) // Interrupt Status
    expect(driver.isr()).toBe(IsrBit.QUEUE)
    expect(line.level).toBe(false)
    expect(driver.isr()).toBe(0)
    // Command.InterruptDisable keeps the pin low while the ISR bit is set.
    driver.cfgWrite(Reg.Command, Command.MemorySpace | Command.BusMaster | Command.InterruptDisable, 2)
    driver.queue(0).add([{ address: driver.alloc(8), length: 8, write: true }])
    driver.notify(0)
    expect(line.level).toBe(false)
    expect(driver.isr()).toBe(IsrBit.QUEUE)
  })

  it('signals configuration changes on the config vector and counts config_generation', () => {
    const device = new FakeDevice()
    const { driver, msi } = pciRig(device)
    driver.init()
    expect(driver.read(PciCapType.DEVICE, 0, 4)).toBe(0x04030201)
    driver.write(PciCapType.DEVICE, 4, 0xaabbccdd, 4)
    expect([...device.cfg.subarray(4)]).toEqual([0xdd, 0xcc, 0xbb, 0xaa])
    expect(driver.read(PciCapType.DEVICE, 0x100, 4)).toBe(0) // past the device's structure
    const generation = driver.common(CommonCfg.CONFIG_GENERATION, 1)
    device.context!.configChanged()
    expect(driver.common(CommonCfg.CONFIG_GENERATION, 1)).toBe((generation + 1) & 0xff)
    expect(msi.deliveries.map((d) => d.data)).toEqual([0x30])
  })

  it('resets device, queues, features and vectors when 0 is written to device_status', () => {
    const device = new FakeDevice()
    const { driver } = pciRig(device)
    driver.init()
    const resets = device.resets
    driver.setCommon(CommonCfg.DEVICE_STATUS, 0, 1)
    expect(device.resets).toBe(resets + 1)
    expect(device.context).toBeUndefined()
    expect(driver.status).toBe(0)
    expect(driver.common(CommonCfg.QUEUE_SELECT, 2)).toBe(0)
    expect(driver.common(CommonCfg.QUEUE_ENABLE, 2)).toBe(0)
    expect(driver.common(CommonCfg.QUEUE_SIZE, 2)).toBe(16) // back to the maximum
    expect(driver.common(CommonCfg.QUEUE_DESC, 8)).toBe(0)
    expect(driver.common(CommonCfg.QUEUE_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR)
    expect(driver.common(CommonCfg.CONFIG_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR)
    driver.setCommon(CommonCfg.DRIVER_FEATURE_SELECT, 0, 4)
    expect(driver.common(CommonCfg.DRIVER_FEATURE, 4)).toBe(0)
    // It comes back up.
    driver.init()
    expect(device.context?.active).toBe(true)
  })
})

describe('virtio-pci against a hostile driver', () => {
  it('answers an out-of-range queue_select with size 0 and ignores writes to it', () => {
    const device = new FakeDevice()
    const { driver } = pciRig(device)
    driver.init()
    driver.setCommon(CommonCfg.QUEUE_SELECT, 0x1234, 2)
    expect(driver.common(CommonCfg.QUEUE_SIZE, 2)).toBe(0)
    expect(driver.common(CommonCfg.QUEUE_ENABLE, 2)).toBe(0)
    expect(driver.common(CommonCfg.QUEUE_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR)
    driver.setCommon(CommonCfg.QUEUE_SIZE, 4, 2)
    driver.setCommon(CommonCfg.QUEUE_ENABLE, 1, 2)
    driver.setCommon(CommonCfg.QUEUE_DESC, 0x1000, 8)
    expect(driver.common(CommonCfg.QUEUE_SIZE, 2)).toBe(0)
    // A doorbell past the last queue, and one between doorbells, reach no queue.
    driver.write(PciCapType.NOTIFY, 0x40 * Layout.NOTIFY_OFF_MULTIPLIER, 0, 2)
    driver.write(PciCapType.NOTIFY, 2, 0, 2)
    expect(device.notified).toEqual([])
    driver.notify(1)
    expect(device.notified).toEqual([1])
  })

  it.each([
    ['not a power of two', 12],
    ['larger than the maximum', 32],
    ['zero', 0],
  ])('fails the device at DRIVER_OK for a queue_size %s, with a config interrupt', (_what, size) => {
    const device = new FakeDevice()
    const { driver, msi, failures } = pciRig(device)
    driver.init({ queueSizes: [size, 8] })
    expect(driver.status & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET)
    expect(device.context).toBeUndefined() // the rings were refused before the device saw them
    expect(failures).toHaveLength(1)
    expect(msi.deliveries.map((d) => d.data)).toEqual([0x30])
    driver.notify(0)
    expect(device.notified).toEqual([])
  })

  it('ignores writes to read-only fields and accesses of the wrong width', () => {
    const { driver } = pciRig(new FakeDevice())
    driver.init()
    const before = {
      feature: driver.common(CommonCfg.DEVICE_FEATURE, 4),
      queues: driver.common(CommonCfg.NUM_QUEUES, 2),
      generation: driver.common(CommonCfg.CONFIG_GENERATION, 1),
    }
    driver.setCommon(CommonCfg.DEVICE_FEATURE, 0xffffffff, 4)
    driver.setCommon(CommonCfg.NUM_QUEUES, 99, 2)
    driver.setCommon(CommonCfg.CONFIG_GENERATION, 7, 1)
    driver.setCommon(CommonCfg.QUEUE_SELECT, 1, 2)
    driver.setCommon(CommonCfg.QUEUE_NOTIFY_OFF, 5, 2)
    expect(driver.common(CommonCfg.DEVICE_FEATURE, 4)).toBe(before.feature)
    expect(driver.common(CommonCfg.NUM_QUEUES, 2)).toBe(before.queues)
    expect(driver.common(CommonCfg.CONFIG_GENERATION, 1)).toBe(before.generation)
    expect(driver.common(CommonCfg.QUEUE_NOTIFY_OFF, 2)).toBe(1)
    // A 4-byte write over device_status and its neighbours, a 2-byte read of it: ignored, 0.
    driver.setCommon(CommonCfg.DEVICE_STATUS, 0, 4)
    expect(driver.status & Status.DRIVER_OK).toBe(Status.DRIVER_OK)
    expect(driver.common(CommonCfg.DEVICE_STATUS, 2)).toBe(0)
    // ISR is read-only.
    driver.write(PciCapType.ISR, 0, 0xff, 1)
    expect(driver.isr()).toBe(0)
    // A live queue keeps its set-up.
    driver.setCommon(CommonCfg.QUEUE_SELECT, 0, 2)
    const desc = driver.common(CommonCfg.QUEUE_DESC, 8)
    driver.setCommon(CommonCfg.QUEUE_DESC, 0x8000, 8)
    driver.setCommon(CommonCfg.QUEUE_SIZE, 2, 2)
    expect(driver.common(CommonCfg.QUEUE_DESC, 8)).toBe(desc)
    expect(driver.common(CommonCfg.QUEUE_SIZE, 2)).toBe(16)
  })

  it('keeps the features fixed once FEATURES_OK is set, and FEATURES_OK itself', () => {
    const device = new FakeDevice()
    const { driver } = pciRig(device)
    driver.init()
    driver.setCommon(CommonCfg.DRIVER_FEATURE_SELECT, 0, 4)
    driver.setCommon(CommonCfg.DRIVER_FEATURE, 0xffffffff, 4)
    expect(driver.common(CommonCfg.DRIVER_FEATURE, 4)).toBe(0)
    expect(device.context?.features).toBe(1n << Feature.VERSION_1)
    driver.setCommon(CommonCfg.DEVICE_STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK, 1)
    expect(driver.status & Status.FEATURES_OK).toBe(Status.FEATURES_OK)
  })

  it('refuses FEATURES_OK for features it did not offer', () => {
    const { driver } = pciRig(new FakeDevice())
    driver.walkCapabilities()
    driver.enableDecoding()
    driver.setCommon(CommonCfg.DEVICE_STATUS, Status.ACKNOWLEDGE | Status.DRIVER, 1)
    driver.setCommon(CommonCfg.DRIVER_FEATURE_SELECT, 1, 4)
    driver.setCommon(CommonCfg.DRIVER_FEATURE, 1 | (1 << 8), 4) // VERSION_1 and bit 40
    driver.setCommon(CommonCfg.DEVICE_STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK, 1)
    expect(driver.status & Status.FEATURES_OK).toBe(0)
  })
})

describe('virtio-pci doorbells on an accelerator (§4.1.4.4)', () => {
  class RecordingAccelerator implements VirtioAccelerator {
    readonly live = new Map<number, { queue: number; match?: DoorbellMatch; ring: () => void }>()
    notifier(address: number, queue: number, onNotify: () => void, match?: DoorbellMatch): Disposable {
      this.live.set(address, { queue, ...(match ? { match } : {}), ring: onNotify })
      return { dispose: () => this.live.delete(address) }
    }
    interrupt(): undefined {
      return undefined
    }
  }

  it('registers a 2-byte doorbell without datamatch per queue and follows BAR 0 when the guest moves it', () => {
    const device = new FakeDevice()
    const { driver, transport } = pciRig(device)
    const accel = new RecordingAccelerator()
    transport.accelerate(accel)
    expect(accel.live.size).toBe(0) // decoding is off until the driver enables it
    driver.init()
    const base = 0x4000000000 + Layout.NOTIFY
    expect([...accel.live.keys()]).toEqual([base, base + 4])
    expect(accel.live.get(base + 4)).toMatchObject({ queue: 1, match: { length: 2, datamatch: false } })
    // The guest moves BAR 0 below 4 GiB (a 64-bit BAR, low half then high half).
    driver.cfgWrite(Reg.Bar0, 0xc8000000)
    driver.cfgWrite(Reg.Bar0 + 4, 0)
    expect(driver.barAddress(0)).toBe(0xc8000000)
    expect([...accel.live.keys()]).toEqual([0xc8000000 + Layout.NOTIFY, 0xc8000000 + Layout.NOTIFY + 4])
    accel.live.get(0xc8000000 + Layout.NOTIFY + 4)!.ring()
    expect(device.notified).toEqual([1])
    expect(transport.counters).toEqual({ trapped: 0, eventfd: 1 })
    // The registers followed too.
    expect(driver.status & Status.DRIVER_OK).toBe(Status.DRIVER_OK)
    // Memory decoding off: no doorbells.
    driver.cfgWrite(Reg.Command, 0, 2)
    expect(accel.live.size).toBe(0)
    transport.dispose()
    expect(accel.live.size).toBe(0)
  })
})

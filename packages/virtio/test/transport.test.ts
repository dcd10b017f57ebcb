import { describe, expect, it } from 'vitest'
import { RngDevice } from '../src/devices/rng/device.js'
import { Interrupt, MMIO_MAGIC, MmioReg, VENDOR_ID } from '../src/mmio/transport.js'
import { DeviceType, Feature, Status } from '../src/spec.js'
import { rig } from './helpers.js'

describe('virtio-mmio transport (§4.2)', () => {
  it('identifies itself as a version 2 device', () => {
    const { driver } = rig(new RngDevice())
    expect(driver.readReg(MmioReg.MAGIC_VALUE)).toBe(MMIO_MAGIC)
    expect(driver.readReg(MmioReg.VERSION)).toBe(2)
    expect(driver.readReg(MmioReg.DEVICE_ID)).toBe(DeviceType.ENTROPY)
    expect(driver.readReg(MmioReg.VENDOR_ID)).toBe(VENDOR_ID)
  })

  it('offers VERSION_1, INDIRECT_DESC and EVENT_IDX', () => {
    const { driver } = rig(new RngDevice())
    const f = driver.offeredFeatures
    for (const bit of [Feature.VERSION_1, Feature.RING_INDIRECT_DESC, Feature.RING_EVENT_IDX])
      expect((f >> bit) & 1n).toBe(1n)
  })

  it('refuses FEATURES_OK without VERSION_1 or with a feature it did not offer', () => {
    const { driver } = rig(new RngDevice())
    expect(() => driver.init({ features: 0n, force: true })).toThrow(/refused/)
    expect(() => driver.init({ features: (1n << Feature.VERSION_1) | (1n << 40n), force: true })).toThrow(
      /refused/,
    )
    driver.init({ features: 1n << Feature.VERSION_1, force: true })
    expect(driver.status & Status.DRIVER_OK).toBe(Status.DRIVER_OK)
  })

  it('reports non-existent queues with QueueNumMax 0 and ignores odd-sized register accesses', () => {
    const { driver, transport } = rig(new RngDevice())
    driver.writeReg(MmioReg.QUEUE_SEL, 1)
    expect(driver.readReg(MmioReg.QUEUE_NUM_MAX)).toBe(0)
    driver.writeReg(MmioReg.QUEUE_SEL, 0)
    expect(driver.readReg(MmioReg.QUEUE_NUM_MAX)).toBe(256)
    const byte = new Uint8Array([0xff])
    transport.read(MmioReg.MAGIC_VALUE, byte)
    expect(byte[0]).toBe(0)
    transport.write(MmioReg.STATUS, new Uint8Array([1, 0]))
    expect(driver.status).toBe(0)
  })

  it('raises the line for used buffers and lowers it on acknowledgement', () => {
    const { driver, irq } = rig(new RngDevice())
    driver.init()
    const buf = driver.alloc(16)
    driver.queue(0).add([{ address: buf, length: 16, write: true }])
    driver.notify(0)
    expect(irq.level).toBe(true)
    expect(driver.acknowledge()).toBe(Interrupt.USED_BUFFER)
    expect(irq.level).toBe(false)
  })

  it('resets on Status 0: queues, features and interrupt status', () => {
    const { driver, transport, irq } = rig(new RngDevice())
    driver.init()
    driver.queue(0).add([{ address: driver.alloc(8), length: 8, write: true }])
    driver.notify(0)
    driver.writeReg(MmioReg.STATUS, 0)
    expect(irq.level).toBe(false)
    expect(driver.readReg(MmioReg.INTERRUPT_STATUS)).toBe(0)
    expect(driver.readReg(MmioReg.QUEUE_READY)).toBe(0)
    expect(transport.queues[0]!.ready).toBe(false)
  })

  it('goes to DEVICE_NEEDS_RESET with a config interrupt when a queue is outside RAM', () => {
    const { driver, failures } = rig(new RngDevice(), 1 << 20)
    driver.writeReg(MmioReg.STATUS, Status.ACKNOWLEDGE | Status.DRIVER)
    driver.writeReg(MmioReg.DRIVER_FEATURES_SEL, 1)
    driver.writeReg(MmioReg.DRIVER_FEATURES, 1)
    driver.writeReg(MmioReg.STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK)
    driver.writeReg(MmioReg.QUEUE_NUM, 16)
    driver.writeReg(MmioReg.QUEUE_DESC_LOW, 0x7fff_0000)
    driver.writeReg(MmioReg.QUEUE_READY, 1)
    driver.writeReg(
      MmioReg.STATUS,
      Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK,
    )
    expect(driver.status & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET)
    expect(driver.readReg(MmioReg.INTERRUPT_STATUS) & Interrupt.CONFIG_CHANGE).toBe(Interrupt.CONFIG_CHANGE)
    expect(failures).toHaveLength(1)
    driver.notify(0) // ignored, no throw
    driver.init()
    expect(driver.status & Status.DEVICE_NEEDS_RESET).toBe(0)
  })

  it('keeps queue registers fixed once the queue is ready', () => {
    const { driver } = rig(new RngDevice())
    driver.init()
    const before = driver.readReg(MmioReg.QUEUE_DESC_LOW)
    driver.writeReg(MmioReg.QUEUE_DESC_LOW, 0x5000)
    expect(driver.readReg(MmioReg.QUEUE_DESC_LOW)).toBe(before)
  })
})

describe('virtio-mmio transport and a faulty device', () => {
  it('turns an exception from device code into DEVICE_NEEDS_RESET instead of throwing', () => {
    const device = new RngDevice()
    device.readConfig = () => {
      throw new Error('bug')
    }
    device.notify = () => {
      throw new Error('bug')
    }
    const { driver, failures } = rig(device)
    driver.init()
    expect(() => driver.readConfig(0, 4)).not.toThrow()
    expect(driver.status & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET)
    driver.init()
    expect(() => driver.notify(0)).not.toThrow()
    expect(driver.status & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET)
    expect(failures).toHaveLength(2)
  })
})

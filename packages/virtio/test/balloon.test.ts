import { guestAddress } from '@vmm/core'
import { describe, expect, it } from 'vitest'
import { BalloonDevice, BalloonFeature, BalloonStat } from '../src/devices/balloon/device.js'
import { Interrupt, MmioReg } from '../src/mmio/transport.js'
import { rig, snapshot } from './helpers.js'

/** A balloon that records each run it gives back ([address, length]) and lets the memory discard it. */
function balloon(discarded: [number, number][] = [], zeroes = true) {
  return new BalloonDevice({
    stats: true,
    deflateOnOom: true,
    targetPages: 16,
    discard: (memory, address, length) => {
      discarded.push([address, length])
      return memory.discard(address, length) && zeroes
    },
  })
}

const u32s = (...v: number[]) => new Uint8Array(Uint32Array.from(v).buffer)

describe('virtio-balloon', () => {
  it('offers STATS_VQ and DEFLATE_ON_OOM and reports the target', () => {
    const { driver } = rig(balloon())
    const f = driver.offeredFeatures
    expect((f >> BalloonFeature.STATS_VQ) & 1n).toBe(1n)
    expect((f >> BalloonFeature.DEFLATE_ON_OOM) & 1n).toBe(1n)
    expect(new DataView(driver.readConfig(0, 4).buffer).getUint32(0, true)).toBe(16)
  })

  it('gives inflated pages back to the host and ignores PFNs outside RAM', () => {
    const discarded: [number, number][] = []
    const { driver, device, memory } = rig(balloon(discarded))
    driver.init()
    memory.write(guestAddress(0x200000), new Uint8Array(4096).fill(9))
    driver.queue(0).add([{ address: driver.put(u32s(0x200, 0x201, 0xfffff)), length: 12 }])
    driver.notify(0)
    expect(discarded).toEqual([[0x200000, 0x2000]])
    expect(device.discardedPages).toBe(2)
    expect(memory.readU8(guestAddress(0x200000))).toBe(0)
    driver.queue(1).add([{ address: driver.put(u32s(0x200)), length: 4 }])
    driver.notify(1)
    expect(driver.queue(1).takeUsed()).toHaveLength(1)
  })

  it('gives consecutive PFNs back as one run whatever their order, and single pages around a PFN outside RAM', () => {
    const discarded: [number, number][] = []
    const { driver, device } = rig(balloon(discarded))
    driver.init()
    const pfns = u32s(0x305, 0x300, 0x302, 0x301, 0x310, 0x303, 0x304)
    driver.queue(0).add([{ address: driver.put(pfns), length: pfns.length }])
    driver.notify(0)
    expect(discarded).toEqual([
      [0x300000, 0x6000],
      [0x310000, 0x1000],
    ])
    expect(device.discardedPages).toBe(7)
    expect(device.unzeroedPages).toBe(0)
    expect(driver.queue(0).takeUsed()).toHaveLength(1)
  })

  it('counts pages the host freed but could not zero, and still completes the request', () => {
    const { driver, device } = rig(balloon([], false))
    driver.init()
    driver.queue(0).add([{ address: driver.put(u32s(0x100, 0x101)), length: 8 }])
    driver.notify(0)
    expect(device.discardedPages).toBe(2)
    expect(device.unzeroedPages).toBe(2)
    expect(driver.queue(0).takeUsed()).toHaveLength(1)
  })

  it('by default gives pages back through GuestMemory.discard: they read as zeroes', () => {
    const device = new BalloonDevice({ stats: false, deflateOnOom: false, targetPages: 0 })
    const { driver, memory } = rig(device)
    driver.init()
    memory.write(guestAddress(0x180000), new Uint8Array(0x2000).fill(0xa5))
    driver.queue(0).add([{ address: driver.put(u32s(0x180, 0x181)), length: 8 }])
    driver.notify(0)
    const back = new Uint8Array(0x2000)
    memory.read(guestAddress(0x180000), back)
    expect(back.every((b) => b === 0)).toBe(true)
    expect(device.discardedPages).toBe(2)
  })

  it('changes the target with a configuration interrupt and a new generation; reads actual', () => {
    const { driver, device } = rig(balloon())
    driver.init()
    const generation = driver.readReg(MmioReg.CONFIG_GENERATION)
    device.setTarget(1024)
    expect(driver.readReg(MmioReg.INTERRUPT_STATUS) & Interrupt.CONFIG_CHANGE).toBe(Interrupt.CONFIG_CHANGE)
    expect(driver.readReg(MmioReg.CONFIG_GENERATION)).toBe(generation + 1)
    expect(new DataView(driver.readConfig(0, 4).buffer).getUint32(0, true)).toBe(1024)
    driver.writeConfig(4, u32s(1000))
    driver.writeConfig(0, u32s(7)) // num_pages is the host's: ignored
    expect(device.actualPages).toBe(1000)
    expect(device.targetPages).toBe(1024)
  })

  it('tells watchers each new actual the driver writes, once per change, and not after unsubscribing', () => {
    const { driver, device } = rig(balloon())
    driver.init()
    const seen: number[] = []
    const off = device.watchActual((p) => seen.push(p))
    device.watchActual(() => {
      throw new Error('a broken watcher')
    })
    driver.writeConfig(4, u32s(10))
    driver.writeConfig(4, u32s(10)) // the same value: no news
    driver.writeConfig(0, u32s(99)) // num_pages: not actual
    driver.writeConfig(4, u32s(20))
    off()
    driver.writeConfig(4, u32s(30))
    expect(seen).toEqual([10, 20])
    expect(device.actualPages).toBe(30)
  })

  it('collects statistics on request (§5.5.6.3)', async () => {
    const { driver, device } = rig(balloon())
    driver.init({ features: 1n << BalloonFeature.STATS_VQ })
    const stats = new DataView(new ArrayBuffer(20))
    stats.setUint16(0, BalloonStat.MEMFREE, true)
    stats.setBigUint64(2, 123456n, true)
    stats.setUint16(10, BalloonStat.MEMTOT, true)
    stats.setBigUint64(12, 999999n, true)
    const buf = driver.put(new Uint8Array(stats.buffer))
    driver.queue(2).add([{ address: buf, length: 20 }])
    driver.notify(2)
    const pending = device.requestStats()
    // The driver gets its buffer back, refills it and posts it again.
    expect(driver.queue(2).takeUsed()).toHaveLength(1)
    stats.setBigUint64(2, 42n, true)
    driver.memory.write(buf, new Uint8Array(stats.buffer))
    driver.queue(2).add([{ address: buf, length: 20 }])
    driver.notify(2)
    expect(await pending).toEqual({ MEMFREE: 42n, MEMTOT: 999999n })
  })

  it('refuses statistics when STATS_VQ was not negotiated', async () => {
    const { driver, device } = rig(balloon())
    driver.init()
    await expect(device.requestStats()).rejects.toThrow(/statistics/)
  })
})

describe('virtio-balloon on a paused machine', () => {
  it('holds a target change interrupt and a statistics request until resume', async () => {
    const { driver, device, memory, irq, transport } = rig(balloon())
    driver.init({ features: 1n << BalloonFeature.STATS_VQ })
    const buf = driver.put(new Uint8Array(10))
    driver.queue(2).add([{ address: buf, length: 10 }])
    driver.notify(2)
    await transport.pause()
    const before = snapshot(memory)
    const edges = irq.edges
    device.setTarget(64)
    const pending = device.requestStats()
    expect(snapshot(memory)).toBe(before) // the stats buffer is not given back yet
    expect(irq.edges).toBe(edges)
    expect(irq.level).toBe(false)
    transport.resume()
    expect(driver.queue(2).takeUsed()).toHaveLength(1)
    expect(driver.acknowledge() & Interrupt.CONFIG_CHANGE).toBe(Interrupt.CONFIG_CHANGE)
    driver.queue(2).add([{ address: buf, length: 10 }])
    driver.notify(2)
    await expect(pending).resolves.toEqual({ SWAP_IN: 0n })
  })
})

import { describe, expect, it } from 'vitest'
import { NET_HDR_SIZE, NetDevice, NetFeature, parseMac } from '../src/devices/net/device.js'
import { macFor } from '../src/devices/net/net.js'
import { FakeTap } from './fakes.js'
import { rig, snapshot } from './helpers.js'

const MAC = parseMac('06:00:00:aa:bb:cc')
const frame = (n: number, fill: number) => new Uint8Array(n).fill(fill)

describe('virtio-net', () => {
  it('exposes the MAC and offers offloads only with a vnet header', () => {
    const plain = rig(new NetDevice(new FakeTap(false), MAC))
    expect(plain.driver.readConfig(0, 6)).toEqual(MAC)
    expect((plain.driver.offeredFeatures >> NetFeature.CSUM) & 1n).toBe(0n)
    const hdr = rig(new NetDevice(new FakeTap(true), MAC))
    expect((hdr.driver.offeredFeatures >> NetFeature.HOST_TSO4) & 1n).toBe(1n)
    expect((hdr.driver.offeredFeatures >> NetFeature.MRG_RXBUF) & 1n).toBe(0n)
  })

  it('tells the TAP exactly the receive offloads the driver accepted', () => {
    const tap = new FakeTap(true)
    const { driver } = rig(new NetDevice(tap, MAC))
    driver.init({ features: (1n << NetFeature.GUEST_CSUM) | (1n << NetFeature.GUEST_TSO4) })
    expect(tap.offloads).toEqual({ csum: true, tso4: true, tso6: false })
  })

  it('transmits header and frame gathered straight from guest memory', () => {
    const tap = new FakeTap(true)
    const { driver, device } = rig(new NetDevice(tap, MAC))
    driver.init()
    const hdr = Uint8Array.of(1, 0, 0, 0, 0, 0, 14, 0, 16, 0, 0xee, 0xee)
    driver.queue(1).add([
      { address: driver.put(hdr), length: NET_HDR_SIZE },
      { address: driver.put(frame(60, 0xab)), length: 60 },
    ])
    driver.notify(1)
    expect(tap.sent).toEqual([Uint8Array.from([...hdr, ...frame(60, 0xab)])])
    expect(device.counters.txFrames).toBe(1)
    tap.full = true
    driver.queue(1).add([{ address: driver.put(new Uint8Array(72)), length: 72 }])
    driver.notify(1)
    expect(device.counters.txDropped).toBe(1)
    expect(driver.queue(1).takeUsed()).toHaveLength(2)
  })

  it('receives frames into posted buffers with num_buffers = 1, dropping what does not fit', () => {
    const tap = new FakeTap(false)
    const { driver, device } = rig(new NetDevice(tap, MAC))
    driver.init()
    tap.inbound.push(frame(100, 1), frame(3000, 2))
    tap.watcher?.()
    expect(tap.inbound).toHaveLength(2) // no buffers yet: nothing read
    expect(tap.watcher).toBeUndefined() // and the TAP is no longer watched
    const a = driver.alloc(2048)
    const b = driver.alloc(2048)
    driver.queue(0).add([{ address: a, length: 2048, write: true }])
    driver.queue(0).add([{ address: b, length: 2048, write: true }])
    driver.notify(0)
    expect(
      driver
        .queue(0)
        .takeUsed()
        .map((u) => u.length),
    ).toEqual([NET_HDR_SIZE + 100, 0])
    const got = driver.get(a, NET_HDR_SIZE + 100)
    expect(got.subarray(10, 12)).toEqual(Uint8Array.of(1, 0))
    expect(got.subarray(NET_HDR_SIZE)).toEqual(frame(100, 1))
    expect(device.counters).toMatchObject({ rxFrames: 1, rxDropped: 1 })
    expect(tap.watcher).toBeUndefined() // both buffers used
    driver.queue(0).add([{ address: driver.alloc(2048), length: 2048, write: true }])
    driver.notify(0)
    expect(tap.watcher).toBeDefined()
  })

  it('receives a frame larger than one page through the copy path into a multi-buffer chain', () => {
    const tap = new FakeTap(true)
    const { driver } = rig(new NetDevice(tap, MAC))
    driver.init()
    const hdr = Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    tap.inbound.push(Uint8Array.from([...hdr, ...frame(1400, 5)]))
    const a = driver.alloc(700)
    const b = driver.alloc(1000)
    driver.queue(0).add([
      { address: a, length: 700, write: true },
      { address: b, length: 1000, write: true },
    ])
    driver.notify(0)
    expect(driver.queue(0).takeUsed()).toEqual([{ id: 0, length: 1412 }])
    const got = Uint8Array.from([...driver.get(a, 700), ...driver.get(b, 712)])
    expect(got.subarray(0, 12)).toEqual(Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0))
    expect(got.subarray(12)).toEqual(frame(1400, 5))
  })

  it('derives a stable locally administered unicast MAC from the component id', () => {
    const mac = macFor('net0')
    expect(mac).toEqual(macFor('net0'))
    expect(mac[0]! & 0x03).toBe(0x02)
  })
})

describe('virtio-net on a paused machine', () => {
  it('leaves frames in the TAP while paused and delivers them, in order, at resume', async () => {
    const tap = new FakeTap(false)
    const { driver, memory, irq, transport } = rig(new NetDevice(tap, MAC))
    driver.init()
    const bufs = [driver.alloc(2048), driver.alloc(2048)]
    for (const b of bufs) driver.queue(0).add([{ address: b, length: 2048, write: true }])
    driver.notify(0)
    expect(tap.watcher).toBeDefined()
    await transport.pause()
    expect(tap.watcher).toBeUndefined() // the TAP is not polled while paused
    const before = snapshot(memory)
    const edges = irq.edges
    tap.inbound.push(frame(100, 1), frame(200, 2))
    driver.notify(0) // a late doorbell changes nothing either
    expect(tap.inbound).toHaveLength(2)
    expect(snapshot(memory)).toBe(before)
    expect(irq.edges).toBe(edges)
    transport.resume()
    expect(tap.inbound).toHaveLength(0)
    const used = driver.queue(0).takeUsed()
    expect(used.map((u) => u.length)).toEqual([NET_HDR_SIZE + 100, NET_HDR_SIZE + 200])
    expect(driver.get(bufs[0]!, NET_HDR_SIZE + 1)[NET_HDR_SIZE]).toBe(1)
    expect(driver.get(bufs[1]!, NET_HDR_SIZE + 1)[NET_HDR_SIZE]).toBe(2)
  })
})

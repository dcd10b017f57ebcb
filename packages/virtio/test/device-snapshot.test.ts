// The devices' own state across a snapshot: each device is saved from a live transport and put
// back into a fresh device over the same guest memory (what Machine.restore does), and the driver
// carries on. Block checks its disk against the fingerprint (real files), net keeps the receive
// buffer it held, vsock tells the guest its connections are gone (§5.10.6.6), console keeps input
// that had not reached the guest, balloon its target and statistics buffer.
import { appendFileSync, copyFileSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type MmioDevice, SavedState } from '@vmm/core'
import { afterEach, describe, expect, it } from 'vitest'
import type { VirtioDevice } from '../src/device.js'
import { BalloonDevice, BalloonFeature } from '../src/devices/balloon/device.js'
import { BlockDevice } from '../src/devices/block/device.js'
import { ConsoleDevice } from '../src/devices/console/device.js'
import { NetDevice, parseMac } from '../src/devices/net/device.js'
import { VsockDevice } from '../src/devices/vsock/device.js'
import { VsockEvent } from '../src/devices/vsock/events.js'
import { VirtioMmioTransport } from '../src/mmio/transport.js'
import { Status } from '../src/spec.js'
import { TestInterruptLine } from '../src/testing/index.js'
import { FakeBackend, FakeTap } from './fakes.js'
import { rig } from './helpers.js'

const throughJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v))
const cleanups: (() => void | Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-devsnap-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Saves `a`'s transport, restores it into a fresh transport around `device`, and points the driver at it. */
async function restoreInto<D extends VirtioDevice>(a: ReturnType<typeof rig>, device: D) {
  const saved = throughJson(a.transport.saveState())
  const irq = new TestInterruptLine()
  const failures: unknown[] = []
  const b = new VirtioMmioTransport(device, a.memory, irq, { onNeedsReset: (e) => failures.push(e) })
  b.restoreState(new SavedState('dev', saved))
  ;(a.driver as { transport: MmioDevice }).transport = b
  // Machine.restore leaves the components paused; resume() is where the machine goes on.
  await b.pause()
  b.resume()
  return { transport: b, irq, failures }
}

describe('virtio-blk state', () => {
  function disk() {
    const dir = tempDir()
    const path = join(dir, 'disk.img')
    writeFileSync(path, Buffer.alloc(1 << 20, 7))
    return { dir, path }
  }
  const open = (path: string) => {
    const d = new BlockDevice({ path, readOnly: false, serial: 'x' })
    cleanups.push(() => d.dispose())
    return d
  }
  async function savedWith(path: string) {
    // Closed before the restore opens the image again (a read-write image is locked).
    const a = rig(new BlockDevice({ path, readOnly: false, serial: 'x' }))
    a.driver.init()
    await a.transport.pause()
    const saved = throughJson(a.transport.saveState())
    await a.device.dispose()
    return { a, saved }
  }
  const restoreOnto = (a: ReturnType<typeof rig>, saved: unknown, path: string) => () =>
    new VirtioMmioTransport(open(path), a.memory, new TestInterruptLine()).restoreState(
      new SavedState('disk0', saved),
    )

  it('records the disk and accepts the same, unchanged file', async () => {
    const { path } = disk()
    const { a, saved } = await savedWith(path)
    expect(
      (saved as { core: { device: { disk: { path: string; size: number } } } }).core.device.disk,
    ).toMatchObject({
      path,
      size: 1 << 20,
    })
    expect(restoreOnto(a, saved, path)).not.toThrow()
  })

  it('refuses the same path written since the snapshot, naming it', async () => {
    const { path } = disk()
    const { a, saved } = await savedWith(path)
    utimesSync(path, new Date(), new Date(Date.now() + 5000))
    expect(restoreOnto(a, saved, path)).toThrow(`disk image ${path} was written since the snapshot`)
  })

  it('refuses a disk of another size, and a file put in its place', async () => {
    const { path } = disk()
    const { a, saved } = await savedWith(path)
    appendFileSync(path, Buffer.alloc(512))
    expect(restoreOnto(a, saved, path)).toThrow(/is 1049088 bytes, the snapshot's disk was 1048576/)
    rmSync(path)
    writeFileSync(path, Buffer.alloc(1 << 20, 7))
    expect(restoreOnto(a, saved, path)).toThrow(/was replaced by another file since the snapshot/)
  })

  it("accepts a clone's copy at another path, and refuses a copy whose contents differ", async () => {
    const { dir, path } = disk()
    const { a, saved } = await savedWith(path)
    const copy = join(dir, 'clone.img')
    copyFileSync(path, copy)
    expect(restoreOnto(a, saved, copy)).not.toThrow()
    const other = join(dir, 'other.img')
    writeFileSync(other, Buffer.alloc(1 << 20, 8))
    expect(restoreOnto(a, saved, other)).toThrow(
      `disk image ${other} (standing in for ${path}) does not hold what the snapshot's disk held`,
    )
  })
})

describe('virtio-net state', () => {
  const MAC = parseMac('06:00:00:aa:bb:cc')

  it('a receive buffer held at the snapshot gets the first frame after restore', async () => {
    const a = rig(new NetDevice(new FakeTap(false), MAC))
    a.driver.init()
    const buffer = a.driver.alloc(2048)
    const head = a.driver.queue(0).add([{ address: buffer, length: 2048, write: true }])
    a.driver.notify(0) // the device takes the buffer and waits for a frame
    await a.transport.pause()
    const tap = new FakeTap(false)
    await restoreInto(a, new NetDevice(tap, MAC))
    tap.inbound.push(new Uint8Array(60).fill(9))
    tap.watcher?.()
    expect(a.driver.queue(0).takeUsed()).toEqual([{ id: head, length: 12 + 60 }])
    expect(a.driver.get(buffer, 13)[12]).toBe(9)
  })

  it("a clone's MAC override is what the restored device offers (the saved one is not forced)", async () => {
    const a = rig(new NetDevice(new FakeTap(false), MAC))
    a.driver.init()
    await a.transport.pause()
    const other = parseMac('06:00:00:00:00:07')
    const { failures } = await restoreInto(a, new NetDevice(new FakeTap(false), other))
    expect(failures).toEqual([])
    expect(a.driver.readConfig(0, 6)).toEqual(other)
  })

  it('refuses a held buffer whose head is outside the queue', async () => {
    const a = rig(new NetDevice(new FakeTap(false), MAC))
    a.driver.init()
    const saved = throughJson(a.transport.saveState()) as { core: { device: { rxHead: number } } }
    saved.core.device.rxHead = 300
    const b = new VirtioMmioTransport(
      new NetDevice(new FakeTap(false), MAC),
      a.memory,
      new TestInterruptLine(),
    )
    expect(() => b.restoreState(new SavedState('net0', saved))).toThrow(
      'net0: core: device: saved state rxHead: descriptor index 300 is not below 256',
    )
  })
})

describe('virtio-vsock state', () => {
  it('a restored device sends TRANSPORT_RESET at resume, or once the driver posts an event buffer', async () => {
    const dir = tempDir()
    const a = rig(new VsockDevice(3, join(dir, 'a.sock')))
    cleanups.push(() => (a.device as VsockDevice).dispose())
    a.driver.init()
    await a.transport.pause()
    const b = new VsockDevice(5, join(dir, 'b.sock'))
    cleanups.push(() => b.dispose())
    await restoreInto(a, b)
    let handled = false
    void b.resetHandled().then(() => (handled = true))
    const events = a.driver.queue(2)
    expect(events.takeUsed()).toEqual([]) // no event buffer yet: the reset waits
    const at = a.driver.alloc(4)
    const head = events.add([{ address: at, length: 4, write: true }])
    a.driver.notify(2)
    expect(events.takeUsed()).toEqual([{ id: head, length: 4 }])
    expect(new DataView(a.driver.get(at, 4).buffer).getUint32(0, true)).toBe(VsockEvent.TRANSPORT_RESET)
    // The driver then reads the CID again: a clone's own.
    expect(new DataView(a.driver.readConfig(0, 8).buffer).getBigUint64(0, true)).toBe(5n)
    await new Promise((r) => setTimeout(r, 20))
    expect(handled).toBe(false) // sent, not yet handled
    events.add([{ address: a.driver.alloc(4), length: 4, write: true }]) // the driver's refill
    await new Promise((r) => setTimeout(r, 20))
    expect(handled).toBe(true)
    a.driver.notify(2)
    expect(events.takeUsed()).toEqual([]) // sent once
    // A device that was not restored has no reset to wait for.
    const c = new VsockDevice(3, join(dir, 'c.sock'))
    cleanups.push(() => c.dispose())
    await expect(c.resetHandled()).resolves.toBeUndefined()
  })
})

describe('virtio-console state', () => {
  it('input that had not reached the guest reaches the restored one', async () => {
    const backend = new FakeBackend()
    const a = rig(new ConsoleDevice(backend))
    a.driver.init()
    backend.send(new TextEncoder().encode('ls\n')) // no receive buffer posted: held
    await a.transport.pause()
    await restoreInto(a, new ConsoleDevice(new FakeBackend()))
    const at = a.driver.alloc(64)
    const head = a.driver.queue(0).add([{ address: at, length: 64, write: true }])
    a.driver.notify(0)
    expect(a.driver.queue(0).takeUsed()).toEqual([{ id: head, length: 3 }])
    expect(new TextDecoder().decode(a.driver.get(at, 3))).toBe('ls\n')
  })
})

describe('virtio-balloon state', () => {
  it('keeps target, actual and the statistics buffer', async () => {
    const options = { stats: true, deflateOnOom: false, targetPages: 0, discard: () => true }
    const device = new BalloonDevice(options)
    const a = rig(device)
    a.driver.init({ features: 1n << BalloonFeature.STATS_VQ })
    device.setTarget(64)
    a.driver.writeConfig(4, Uint8Array.of(10, 0, 0, 0))
    const stats = a.driver.alloc(10)
    const head = a.driver.queue(2).add([{ address: stats, length: 10 }])
    a.driver.notify(2)
    await a.transport.pause()
    const b = new BalloonDevice(options)
    const { failures } = await restoreInto(a, b)
    expect(failures).toEqual([])
    expect([b.targetPages, b.actualPages]).toEqual([64, 10])
    const answer = b.requestStats() // gives the held buffer back: the driver refills it
    expect(a.driver.queue(2).takeUsed()).toEqual([{ id: head, length: 0 }])
    a.driver.queue(2).add([{ address: stats, length: 10 }])
    a.driver.notify(2)
    await expect(answer).resolves.toEqual(expect.any(Object))
    expect(a.transport.deviceStatus & Status.DEVICE_NEEDS_RESET).toBe(0)
  })
})

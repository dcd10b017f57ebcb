// virtio-9p through the virtio-mmio transport and the fake driver: the configuration (tag), the
// request queue as Linux's trans_virtio uses it (T-message in readable buffers, R-message in
// writable ones, zero-copy payloads in their own descriptors), bounded concurrency, malformed
// chains, reset with requests in flight, and the component types.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ComponentRegistry, Machine, registerBuiltins } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { P9_MAX_IN_FLIGHT, P9Device, P9Feature } from '../src/devices/9p/device.js'
import { Errno, Msg, NOTAG, Reader, Writer } from '../src/devices/9p/protocol.js'
import { register, type VirtioMmio, virtioPciTypes } from '../src/index.js'
import { MmioReg } from '../src/mmio/transport.js'
import { DeviceType } from '../src/spec.js'
import { MmioDriver, until } from '../src/testing/index.js'
import { rig } from './helpers.js'

let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vmm-9p-dev-'))
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

const msg = (type: number, tag: number, body: (w: Writer) => void) => {
  const w = new Writer()
  body(w)
  return w.finish(type, tag)
}

/** A driver with the device set up, and a way to post one request as trans_virtio does. */
function setup(readonly = false) {
  const device = new P9Device({ tag: 'rootfs', path: dir, readonly })
  const r = rig(device)
  r.driver.init({ features: 1n << P9Feature.MOUNT_TAG })
  const q = r.driver.queue(0)
  /** Posts readable pieces and writable sizes; returns the writable buffers' addresses. */
  const post = (readable: Uint8Array[], writable: number[]) => {
    const outs = writable.map((n) => ({ address: r.driver.alloc(n), length: n, write: true }))
    q.add([...readable.map((b) => ({ address: r.driver.put(b), length: b.length })), ...outs])
    r.driver.notify(0)
    return outs.map((o) => o.address)
  }
  const call = async (message: Uint8Array, replySize = 4096) => {
    const before = q.usedIndex
    const [at] = post([message], [replySize])
    await until(() => q.usedIndex !== before, 5000, 'the reply')
    const used = q.takeUsed()[0]!
    const bytes = r.driver.get(at!, used.length)
    return { type: bytes[4]!, r: new Reader(bytes), length: used.length }
  }
  return { ...r, device, q, post, call }
}

describe('virtio-9p device', () => {
  it('offers the mount tag in its configuration (tag_len, tag)', () => {
    const { driver, device } = setup()
    expect(driver.readReg(MmioReg.DEVICE_ID)).toBe(DeviceType.P9)
    expect(driver.offeredFeatures & 1n).toBe(1n)
    const config = driver.readConfig(0, 8)
    expect(new DataView(config.buffer).getUint16(0, true)).toBe(6)
    expect(new TextDecoder().decode(config.subarray(2))).toBe('rootfs')
    device.server.close()
  })

  it('writes from and reads into separate guest buffers (zero-copy descriptors)', async () => {
    const { call, post, q, driver, device } = setup()
    await call(msg(Msg.TVERSION, NOTAG, (w) => w.u32(262144).string('9P2000.L')))
    await call(msg(Msg.TATTACH, 1, (w) => w.u32(0).u32(~0).string('').string('').u32(0)))
    await call(msg(Msg.TWALK, 1, (w) => w.u32(0).u32(1).u16(0)))
    const created = await call(msg(Msg.TLCREATE, 1, (w) => w.u32(1).string('f').u32(2).u32(0o644).u32(0)))
    expect(created.type).toBe(Msg.TLCREATE + 1)
    // Twrite: the 23-byte header in one descriptor, the payload in two more (as the kernel's zc path).
    const payload = new Uint8Array(10000).map((_, i) => i % 251)
    const header = new Writer().u32(1).u64(0).u32(payload.length).finish(Msg.TWRITE, 2)
    new DataView(header.buffer).setUint32(0, 23 + payload.length, true)
    const before = q.usedIndex
    const [wr] = post([header, payload.subarray(0, 4000), payload.subarray(4000)], [64])
    await until(() => q.usedIndex !== before)
    q.takeUsed()
    expect(new Reader(driver.get(wr!, 11)).u32()).toBe(10000)
    expect(readFileSync(join(dir, 'f'))).toEqual(Buffer.from(payload))
    // Tread: the reply header in an 11-byte descriptor, the data in a second one.
    const b2 = q.usedIndex
    const [rh, rd] = post([msg(Msg.TREAD, 3, (w) => w.u32(1).u64(100).u32(5000))], [11, 8192])
    await until(() => q.usedIndex !== b2)
    expect(q.takeUsed()[0]!.length).toBe(11 + 5000)
    const rr = new Reader(driver.get(rh!, 11))
    expect(rr.bytes[4]).toBe(Msg.TREAD + 1)
    expect(new DataView(rr.bytes.buffer).getUint32(0, true)).toBe(11 + 5000) // size counts the data
    expect(rr.u32()).toBe(5000)
    expect(driver.get(rd!, 5000)).toEqual(payload.subarray(100, 5100))
    device.server.close()
  })

  it('completes more requests than it runs at once', async () => {
    writeFileSync(join(dir, 'x'), 'x')
    const { call, post, q, device } = setup()
    await call(msg(Msg.TVERSION, NOTAG, (w) => w.u32(65536).string('9P2000.L')))
    await call(msg(Msg.TATTACH, 1, (w) => w.u32(0).u32(~0).string('').string('').u32(0)))
    const n = P9_MAX_IN_FLIGHT * 3
    const before = q.usedIndex
    for (let i = 0; i < n; i++)
      post(
        [
          msg(Msg.TWALK, i, (w) =>
            w
              .u32(0)
              .u32(100 + i)
              .u16(1)
              .string('x'),
          ),
        ],
        [256],
      )
    await until(() => ((q.usedIndex - before) & 0xffff) === n, 10000, 'every reply')
    expect(q.takeUsed()).toHaveLength(n)
    expect(device.server.fidCount).toBe(n + 1)
    device.server.close()
  })

  it('answers malformed chains with Rlerror and never fails the device', async () => {
    const { post, q, driver, failures, device } = setup()
    const before = q.usedIndex
    const [a] = post([new Uint8Array([1, 2, 3])], [64]) // shorter than a header
    const lie = msg(Msg.TVERSION, 7, (w) => w.u32(8192).string('9P2000.L'))
    new DataView(lie.buffer).setUint32(0, 100_000, true) // a size past the chain
    const [b] = post([lie], [64])
    const [c] = post([msg(Msg.TVERSION, 8, (w) => w.u32(8192).string('9P2000.L'))], [3]) // no room
    await until(() => ((q.usedIndex - before) & 0xffff) === 3)
    const used = q.takeUsed()
    expect(used.map((u) => u.length)).toEqual([11, 11, 3])
    const ra = new Reader(driver.get(a!, 11))
    expect([ra.bytes[4], ra.u32()]).toEqual([Msg.RLERROR, Errno.EPROTO])
    const rb = new Reader(driver.get(b!, 11))
    expect([rb.bytes[4], new DataView(rb.bytes.buffer).getUint16(5, true), rb.u32()]).toEqual([
      Msg.RLERROR,
      7,
      Errno.EPROTO,
    ])
    expect(c).toBeDefined()
    expect(failures).toEqual([])
    device.server.close()
  })

  it('drops replies of requests in flight at a reset', async () => {
    const { call, post, q, transport, device } = setup()
    await call(msg(Msg.TVERSION, NOTAG, (w) => w.u32(8192).string('9P2000.L')))
    await call(msg(Msg.TATTACH, 1, (w) => w.u32(0).u32(~0).string('').string('').u32(0)))
    const before = q.usedIndex
    post([msg(Msg.TGETATTR, 2, (w) => w.u32(0).u64(0x7ff))], [256])
    transport.write(MmioReg.STATUS, new Uint8Array(4)) // reset before the host answered
    await new Promise((r) => setTimeout(r, 50))
    expect(q.usedIndex).toBe(before)
    await device.dispose()
  })
})

describe('virtio-9p component types', () => {
  const cleanups: (() => Promise<void>)[] = []
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c()
  })
  async function machine(components: Record<string, unknown>) {
    const registry = registerBuiltins(new ComponentRegistry())
    register(registry)
    const m = await Machine.fromObject(
      {
        machine: {
          memory: '16MiB',
          vcpus: 1,
          irqchip: true,
          layout: { mmio: { base: 0xd0000000, size: 0x100000 } },
        },
        components,
      },
      { hypervisor: new TestHypervisor(), registry },
    )
    cleanups.push(() => m.dispose())
    return m
  }

  it('builds virtio-9p from a manifest, and has a virtio-9p-pci twin', async () => {
    const m = await machine({ fs: { type: 'virtio-9p', tag: 'share', path: dir } })
    const driver = new MmioDriver(m.component<VirtioMmio>('fs'), m.memory, 0x10000)
    expect(driver.readReg(MmioReg.DEVICE_ID)).toBe(DeviceType.P9)
    expect(virtioPciTypes.map((t) => t.name)).toContain('virtio-9p-pci')
  })

  it('blames the manifest for a missing directory, a file, or a bad tag', async () => {
    writeFileSync(join(dir, 'file'), '')
    await expect(machine({ fs: { type: 'virtio-9p', tag: 't', path: join(dir, 'nope') } })).rejects.toThrow(
      /shared directory .*nope: does not exist \(ENOENT\)/,
    )
    await expect(machine({ fs: { type: 'virtio-9p', tag: 't', path: join(dir, 'file') } })).rejects.toThrow(
      /shared directory .*file is not a directory/,
    )
    await expect(machine({ fs: { type: 'virtio-9p', tag: 'has space', path: dir } })).rejects.toThrow(/tag/)
    await expect(machine({ fs: { type: 'virtio-9p', path: dir } })).rejects.toThrow(/tag/)
  })
})

// virtio-9p across a snapshot: the session (msize, fids as paths, open files) saved through the
// transport, restored on a fresh device over the same directory and guest memory; the driver goes
// on with its fids. Fids whose file went away come back stale (ESTALE, clunk still works); a
// saved state that is not one is refused naming the field.
import { mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type MmioDevice, SavedState } from '@vmm/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { P9Device, P9Feature } from '../src/devices/9p/device.js'
import { Errno, Msg, NOTAG, P9Server, Reader, Writer } from '../src/devices/9p/index.js'
import { VirtioMmioTransport } from '../src/mmio/transport.js'
import { TestInterruptLine, until } from '../src/testing/index.js'
import { rig } from './helpers.js'
import { TestClient } from './p9-client.js'

const throughJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v))
let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vmm-9p-snap-'))
  mkdirSync(join(dir, 'd'))
  writeFileSync(join(dir, 'd', 'f'), 'kept across the snapshot')
  writeFileSync(join(dir, 'gone'), 'x')
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

const msg = (type: number, tag: number, body: (w: Writer) => void) => {
  const w = new Writer()
  body(w)
  return w.finish(type, tag)
}

describe('virtio-9p snapshot', () => {
  it('a restored device carries on with the guest’s fids and open files', async () => {
    const a = rig(new P9Device({ tag: 't', path: dir, readonly: false }))
    a.driver.init({ features: 1n << P9Feature.MOUNT_TAG })
    const q = a.driver.queue(0)
    const call = async (m: Uint8Array, size = 4096) => {
      const out = a.driver.alloc(size)
      const before = q.usedIndex
      q.add([
        { address: a.driver.put(m), length: m.length },
        { address: out, length: size, write: true },
      ])
      a.driver.notify(0)
      await until(() => q.usedIndex !== before)
      const used = q.takeUsed()[0]!
      return new Reader(a.driver.get(out, used.length))
    }
    await call(msg(Msg.TVERSION, NOTAG, (w) => w.u32(65536).string('9P2000.L')))
    await call(msg(Msg.TATTACH, 1, (w) => w.u32(0).u32(~0).string('').string('').u32(0)))
    await call(msg(Msg.TWALK, 1, (w) => w.u32(0).u32(1).u16(2).string('d').string('f')))
    await call(msg(Msg.TLOPEN, 1, (w) => w.u32(1).u32(0)))
    await call(msg(Msg.TWALK, 1, (w) => w.u32(0).u32(2).u16(1).string('gone')))
    await (a.device as P9Device).pause()
    const saved = throughJson(a.transport.saveState())
    unlinkSync(join(dir, 'gone')) // between the snapshot and the restore

    const b = new VirtioMmioTransport(
      new P9Device({ tag: 't', path: dir, readonly: false }),
      a.memory,
      new TestInterruptLine(),
    )
    b.restoreState(new SavedState('fs', saved))
    ;(a.driver as { transport: MmioDevice }).transport = b
    const read = await call(msg(Msg.TREAD, 2, (w) => w.u32(1).u64(0).u32(100)))
    expect(read.bytes[4]).toBe(Msg.TREAD + 1)
    expect(new TextDecoder().decode(read.bytes.subarray(11))).toBe('kept across the snapshot')
    const stale = await call(msg(Msg.TGETATTR, 3, (w) => w.u32(2).u64(0x7ff)))
    expect([stale.bytes[4], stale.u32()]).toEqual([Msg.RLERROR, Errno.ESTALE])
    const clunk = await call(msg(Msg.TCLUNK, 4, (w) => w.u32(2)))
    expect(clunk.bytes[4]).toBe(Msg.TCLUNK + 1)
    await b.dispose()
    await a.transport.dispose()
  })

  it('saves a fid whose file lost its name as stale, and refuses bad states naming the field', async () => {
    const server = new P9Server({ root: dir, readonly: false })
    const c = await new TestClient(server).start()
    await c.walk(0, 1, 'gone')
    unlinkSync(join(dir, 'gone'))
    writeFileSync(join(dir, 'gone'), 'another file, same name')
    const saved = throughJson(server.saveState()) as { fids: { fid: number; stale: boolean; path: string }[] }
    expect(saved.fids.find((f) => f.fid === 1)).toMatchObject({ path: 'gone', stale: true })
    server.close()
    const restore = (state: unknown) => {
      const s = new P9Server({ root: dir, readonly: false })
      try {
        s.restoreState(new SavedState('fs', state))
      } finally {
        s.close()
      }
    }
    const bad = (change: (s: Record<string, unknown> & typeof saved) => void) => {
      const s = structuredClone(saved) as Record<string, unknown> & typeof saved
      change(s)
      return () => restore(s)
    }
    expect(bad((s) => (s.fids[0]!.path = '../etc'))).toThrow(
      /fs: fids\[0\]: saved state path: "\.\." is not a file name/,
    )
    expect(bad((s) => (s.fids[1]!.fid = s.fids[0]!.fid))).toThrow(/appears twice/)
    expect(bad((s) => (s.count = 99))).toThrow(/fids: must be a list of 99 states/)
    expect(bad((s) => (s.msize = 1 << 30))).toThrow(/msize: must be an integer/)
    expect(() => restore(saved)).not.toThrow()
  })

  it('rebinds a share without fids to another directory at restore, and refuses it with fids', async () => {
    const other = mkdtempSync(join(tmpdir(), 'vmm-9p-rebind-'))
    writeFileSync(join(other, 'f'), 'the clone’s own directory')
    try {
      // A guest whose driver probed the device (and negotiated a version) but mounted nothing.
      const idle = rig(new P9Device({ tag: 't', path: dir, readonly: false }))
      idle.driver.init({ features: 1n << P9Feature.MOUNT_TAG })
      await (idle.device as P9Device).pause()
      const unmounted = throughJson(idle.transport.saveState())
      const rebound = rig(new P9Device({ tag: 't', path: other, readonly: true }))
      rebound.transport.restoreState(new SavedState('fs-rootfs', unmounted))
      const server = (rebound.device as P9Device).server
      const c = await new TestClient(server).start()
      await c.walk(0, 1, 'f')
      await c.lopen(1, 0)
      expect(new TextDecoder().decode(await c.read(1, 0, 100))).toBe('the clone’s own directory')
      expect(await c.errno(Msg.TLCREATE, (w) => w.u32(0).string('n').u32(0o1).u32(0o644).u32(0))).toBe(
        Errno.EROFS,
      ) // and readonly, as the override said
      await rebound.transport.dispose()
      await idle.transport.dispose()

      // The same with a fid (an attach: the guest mounted the share): refused, naming both.
      const mounted = rig(new P9Device({ tag: 't', path: dir, readonly: false }))
      mounted.driver.init({ features: 1n << P9Feature.MOUNT_TAG })
      const m = await new TestClient((mounted.device as P9Device).server).start()
      await m.walk(0, 1, 'd')
      await (mounted.device as P9Device).pause()
      const held = throughJson(mounted.transport.saveState())
      const refused = rig(new P9Device({ tag: 't', path: other, readonly: false }))
      expect(() => refused.transport.restoreState(new SavedState('fs-rootfs', held))).toThrow(
        `fs-rootfs: core: device: saved state root: the guest holds 2 fids in ${dir} (mounted there at the snapshot): the share cannot be rebound to ${other}`,
      )
      // Over the same directory the fids come back as before.
      const same = rig(new P9Device({ tag: 't', path: dir, readonly: false }))
      expect(() => same.transport.restoreState(new SavedState('fs-rootfs', held))).not.toThrow()
      for (const r of [refused, same, mounted]) await r.transport.dispose()
    } finally {
      rmSync(other, { recursive: true, force: true })
    }
  })
})

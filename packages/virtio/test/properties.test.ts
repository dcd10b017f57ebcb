import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, it } from 'vitest'
import { BlockDevice } from '../src/devices/block/device.js'
import { RngDevice } from '../src/devices/rng/device.js'
import { hostileCase, runHostile } from './hostile.js'

const dir = mkdtempSync(join(tmpdir(), 'vmm-virtio-prop-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const image = join(dir, 'disk.img')
writeFileSync(image, new Uint8Array(64 * 1024))

const settleIo = () => new Promise<void>((r) => setTimeout(r, 2))

describe('hostile descriptor tables (fast-check)', () => {
  it('virtio-rng: nothing escapes, no access outside RAM', async () => {
    await fc.assert(
      fc.asyncProperty(hostileCase, (c) => runHostile(() => new RngDevice(), 0, c)),
      { numRuns: 300 },
    )
  })

  it('virtio-blk: nothing escapes, no access outside RAM', async () => {
    await fc.assert(
      fc.asyncProperty(hostileCase, (c) =>
        runHostile(() => new BlockDevice({ path: image, readOnly: false, serial: 'p' }), 0, c, settleIo),
      ),
      { numRuns: 150 },
    )
  })
})

import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { BlockDevice } from '../src/devices/block/device.js'

// Issue 13 item 7: a disk vmm may only read, opened read-write, says to set `readOnly: true`.
describe('virtio-blk: opening the image', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-blk-open-'))
  const path = join(dir, 'ro.img')
  writeFileSync(path, new Uint8Array(4096))
  // root opens a mode-0444 file for writing anyway; an immutable file (chattr +i) it cannot.
  const root = process.getuid?.() === 0
  if (!root) chmodSync(path, 0o444)
  const locked = root ? spawnSync('chattr', ['+i', path]).status === 0 : true
  afterAll(() => {
    if (root) spawnSync('chattr', ['-i', path])
    rmSync(dir, { recursive: true, force: true })
  })

  it.skipIf(!locked)('a read-only file opened read-write: the path, the errno and the fix', async () => {
    expect(() => new BlockDevice({ path, readOnly: false, serial: 'd' })).toThrow(
      new RegExp(
        `^disk image ${path}: permission denied \\(E(ACCES|PERM)\\); it cannot be opened for writing: set \`readOnly: true\``,
      ),
    )
    const ro = new BlockDevice({ path, readOnly: true, serial: 'd' })
    expect(ro.capacity).toBe(8)
    await ro.dispose()
  })

  it('a missing image names the path', () => {
    expect(() => new BlockDevice({ path: join(dir, 'nope.img'), readOnly: true, serial: 'd' })).toThrow(
      `disk image ${join(dir, 'nope.img')}: does not exist (ENOENT)`,
    )
  })

  it('a second machine opening an image read-write is refused, naming the path; readers share it', async () => {
    const shared = join(dir, 'shared.img')
    writeFileSync(shared, new Uint8Array(4096))
    const first = new BlockDevice({ path: shared, readOnly: false, serial: 'a' })
    expect(() => new BlockDevice({ path: shared, readOnly: false, serial: 'b' })).toThrow(
      `disk image ${shared} is in use by another machine`,
    )
    expect(() => new BlockDevice({ path: shared, readOnly: true, serial: 'b' })).toThrow(/in use/)
    await first.dispose()
    // Closed: the lock went with it; two readers together are fine.
    const readers = [0, 1].map((i) => new BlockDevice({ path: shared, readOnly: true, serial: `r${i}` }))
    expect(() => new BlockDevice({ path: shared, readOnly: false, serial: 'w' })).toThrow(/in use/)
    for (const r of readers) await r.dispose()
    const again = new BlockDevice({ path: shared, readOnly: false, serial: 'c' })
    await again.dispose()
  })

  // A loop device is a real block device (st_size 0): its size comes from BLKGETSIZE64.
  const backing = join(dir, 'loop.img')
  writeFileSync(backing, new Uint8Array(8192))
  const loop = root ? spawnSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' }) : undefined
  const device = loop?.status === 0 ? loop.stdout.trim() : undefined
  afterAll(() => {
    if (device) spawnSync('losetup', ['-d', device])
  })
  it.skipIf(device === undefined)('a block device is sized with BLKGETSIZE64', async () => {
    const d = new BlockDevice({ path: device as string, readOnly: true, serial: 'loop' })
    expect(d.capacity).toBe(16)
    await d.dispose()
  })
})

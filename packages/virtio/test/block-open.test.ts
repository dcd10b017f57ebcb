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
})

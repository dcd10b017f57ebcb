// Disk-image helpers: deallocating a file range (fallocate(2)) for virtio-blk DISCARD / WRITE_ZEROES.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { deallocateFileRange } from '../src/index.js'

const MiB = 1 << 20
let dir: string | undefined
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
  dir = undefined
})

function image(bytes: number): { path: string; fd: number } {
  dir = mkdtempSync(join(tmpdir(), 'vmm-falloc-'))
  const path = join(dir, 'disk.img')
  writeFileSync(path, Buffer.alloc(bytes, 0xa5))
  return { path, fd: openSync(path, 'r+') }
}

describe('deallocateFileRange', () => {
  it('punches a hole: the range reads as zeroes, its blocks are freed, the size and the rest stay', () => {
    const { path, fd } = image(4 * MiB)
    try {
      const before = statSync(path).blocks
      deallocateFileRange(fd, MiB, 2 * MiB)
      const after = statSync(path)
      expect(after.size).toBe(4 * MiB)
      // st_blocks counts 512-byte units: 2 MiB fewer allocated (tmpfs and ext4 both punch).
      expect(before - after.blocks).toBe((2 * MiB) / 512)
      const data = readFileSync(path)
      expect(data.subarray(MiB, 3 * MiB).every((b) => b === 0)).toBe(true)
      expect(data.subarray(0, MiB).every((b) => b === 0xa5)).toBe(true)
      expect(data.subarray(3 * MiB).every((b) => b === 0xa5)).toBe(true)
    } finally {
      closeSync(fd)
    }
  })

  it('zeroes a range without changing the size', () => {
    const { path, fd } = image(MiB)
    try {
      try {
        deallocateFileRange(fd, 4096, 8192, true)
      } catch (e) {
        // Some file systems (tmpfs before Linux 6.x) have no ZERO_RANGE: the error says so.
        expect((e as { code?: string }).code).toBe('EOPNOTSUPP')
        return
      }
      const data = readFileSync(path)
      expect(statSync(path).size).toBe(MiB)
      expect(data.subarray(4096, 12288).every((b) => b === 0)).toBe(true)
      expect(data[4095]).toBe(0xa5)
      expect(data[12288]).toBe(0xa5)
    } finally {
      closeSync(fd)
    }
  })

  it('reports a bad descriptor and an impossible range with errno, never silently', () => {
    expect(() => deallocateFileRange(-1, 0, 4096)).toThrow(expect.objectContaining({ code: 'EBADF' }))
    const { fd } = image(4096)
    try {
      expect(() => deallocateFileRange(fd, 2 ** 62, 2 ** 62)).toThrow(RangeError)
    } finally {
      closeSync(fd)
    }
  })
})

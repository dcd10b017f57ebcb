// What a snapshot records of a disk image, and the check that the image a restore opens is still
// that disk. A restored guest's page cache and file systems hold what they read from the disk up
// to the snapshot: any byte changed since then would be silent corruption, so a changed disk is
// refused before any vCPU runs.
//
// What is compared, and why:
// - size: a different capacity is a different disk (and the guest's idea of it is fixed).
// - inode, device and mtime (ns), when the restore opens the same path the snapshot recorded:
//   any write through the file system moves mtime, and a file replaced by another has another
//   inode. This is exact and costs one fstat, whatever the disk's size.
// - SHA-256 of the first and the last 64 KiB (partition table, superblock, the end of the
//   disk), always: catches another image of the same size, and is all there is to compare for a
//   clone's own copy (a restore that names another path: a copy has its own inode and mtime) or a
//   block device (whose mtime does not follow writes). A full hash would be exact for copies too,
//   but costs a read of the whole disk at every snapshot and restore, which is what snapshots are
//   meant to avoid; a copy changed only in the middle is therefore not detected.
import { createHash } from 'node:crypto'
import { fstatSync, readSync } from 'node:fs'
import type { SavedState } from '@vmm/core'

/** How much of each end of the disk is hashed. */
export const FINGERPRINT_SAMPLE = 64 * 1024

export interface DiskFingerprint {
  path: string
  size: number
  /** st_ino / st_dev, as decimal strings (they can pass 2^53). */
  ino: string
  dev: string
  /** st_mtime in nanoseconds, decimal. */
  mtimeNs: string
  /** A regular file (mtime and inode mean something); false for a block device. */
  file: boolean
  /** SHA-256 (hex) of the first and the last FINGERPRINT_SAMPLE bytes. */
  sample: string
}

export function fingerprint(fd: number, path: string, size: number): DiskFingerprint {
  const st = fstatSync(fd, { bigint: true })
  return {
    path,
    size,
    ino: st.ino.toString(),
    dev: st.dev.toString(),
    mtimeNs: st.mtimeNs.toString(),
    file: st.isFile(),
    sample: sampleHash(fd, size),
  }
}

function sampleHash(fd: number, size: number): string {
  const h = createHash('sha256')
  const n = Math.min(size, FINGERPRINT_SAMPLE)
  const buffer = Buffer.alloc(n)
  for (const at of [0, size - n]) {
    let got = 0
    while (got < n) {
      const r = readSync(fd, buffer, got, n - got, at + got)
      if (r === 0) break
      got += r
    }
    h.update(buffer.subarray(0, got))
  }
  return h.digest('hex')
}

const DECIMAL = /^[0-9]{1,20}$/

/** The saved fingerprint, checked field by field (it comes from a snapshot file). */
export function readFingerprint(s: SavedState): DiskFingerprint {
  s.only('path', 'size', 'ino', 'dev', 'mtimeNs', 'file', 'sample')
  return {
    path: s.string('path', /^[^\0]+$/, 4096),
    size: s.int('size', 0, Number.MAX_SAFE_INTEGER),
    ino: s.string('ino', DECIMAL),
    dev: s.string('dev', DECIMAL),
    mtimeNs: s.string('mtimeNs', DECIMAL),
    file: s.bool('file'),
    sample: s.string('sample', /^[0-9a-f]{64}$/),
  }
}

/**
 * Why the disk open at `now` is not the one the snapshot saw (`then`), or undefined when it is.
 * The message names both paths and says what differs and what to do.
 */
export function fingerprintMismatch(then: DiskFingerprint, now: DiskFingerprint): string | undefined {
  const which =
    then.path === now.path
      ? `disk image ${now.path}`
      : `disk image ${now.path} (standing in for ${then.path})`
  if (then.size !== now.size)
    return `${which} is ${now.size} bytes, the snapshot's disk was ${then.size}: not the same disk`
  if (then.path === now.path && then.file && now.file) {
    if (then.ino !== now.ino || then.dev !== now.dev)
      return `${which} was replaced by another file since the snapshot (inode ${then.ino} -> ${now.ino})`
    if (then.mtimeNs !== now.mtimeNs)
      return (
        `${which} was written since the snapshot (mtime changed): the restored guest's caches would ` +
        'not match it; restore from a copy taken with the snapshot'
      )
  }
  if (then.sample !== now.sample)
    return `${which} does not hold what the snapshot's disk held (its first or last 64 KiB differ)`
  return undefined
}

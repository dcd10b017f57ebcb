// A writer for the cpio "newc" (SVR4, no CRC) archive format, the one the Linux kernel unpacks as
// an initramfs. Format: Documentation/driver-api/early-userspace/buffer-format.rst of the kernel
// source (and cpio(5)). Every entry is a 110-byte ASCII header ("070701" then 13 fields of 8 hex
// digits), the NUL-terminated path name padded so that the data starts on a 4-byte boundary, then
// the data padded to a 4-byte boundary; the archive ends with an entry named "TRAILER!!!".
import { gzipSync } from 'node:zlib'

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Uint8Array | string; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char' | 'block'; path: string; major: number; minor: number; mode?: number }

// File type bits of st_mode (<sys/stat.h>), which newc stores in c_mode together with permissions.
const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000
const S_IFCHR = 0o020000
const S_IFBLK = 0o060000

const MAGIC = '070701'
const TRAILER = 'TRAILER!!!'

/** Options that apply to every entry. */
export interface CpioOptions {
  /** c_mtime of every entry; a fixed value keeps archives reproducible (and cache keys stable). */
  mtime?: number
}

function normalisePath(path: string): string {
  // The kernel creates names relative to the root of the rootfs; cpio(1) also warns about (and
  // by default strips) a leading "/". Store names relative, as `find . | cpio -o` would.
  const p = path.replace(/^\/+/, '').replace(/\/+$/, '')
  if (p === '' || p.split('/').some((c) => c === '' || c === '..'))
    throw new Error(`cpio: bad path name ${JSON.stringify(path)}`)
  return p
}

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`cpio: field value ${n} out of range`)
  return n.toString(16).padStart(8, '0')
}

const pad4 = (n: number) => (4 - (n % 4)) % 4

/**
 * Builds a newc archive. Parent directories that are not listed are added (mode 0755) before
 * their first child, because the kernel's unpacker does not create missing parents
 * (init/initramfs.c: do_name() just calls the create function on the full name).
 */
export function writeCpio(entries: readonly CpioEntry[], options: CpioOptions = {}): Buffer {
  const mtime = options.mtime ?? 0
  const chunks: Buffer[] = []
  const seen = new Set<string>()
  // newc identifies hard links by (c_ino, c_dev) when c_nlink > 1; give every entry its own inode
  // number so no two entries are ever taken for links of one file.
  let ino = 1

  const emit = (name: string, mode: number, nlink: number, data: Buffer, rdev: [number, number]) => {
    const nameBytes = Buffer.from(`${name}\0`, 'utf8')
    const header =
      MAGIC +
      hex8(name === TRAILER ? 0 : ino++) +
      hex8(mode) +
      hex8(0) + // c_uid: root
      hex8(0) + // c_gid: root
      hex8(nlink) +
      hex8(mtime) +
      hex8(data.length) +
      hex8(0) + // c_devmajor
      hex8(0) + // c_devminor
      hex8(rdev[0]) +
      hex8(rdev[1]) +
      hex8(nameBytes.length) +
      hex8(0) // c_check: only used by the "070702" CRC format
    chunks.push(Buffer.from(header, 'ascii'), nameBytes, Buffer.alloc(pad4(110 + nameBytes.length)))
    chunks.push(data, Buffer.alloc(pad4(data.length)))
  }

  const addDir = (path: string, mode: number) => {
    if (seen.has(path)) return
    addParents(path)
    seen.add(path)
    emit(path, S_IFDIR | mode, 2, Buffer.alloc(0), [0, 0])
  }
  const addParents = (path: string) => {
    const parts = path.split('/')
    for (let i = 1; i < parts.length; i++) addDir(parts.slice(0, i).join('/'), 0o755)
  }

  for (const e of entries) {
    const path = normalisePath(e.path)
    if (e.type === 'dir') {
      if (seen.has(path)) throw new Error(`cpio: ${path} listed twice (or after one of its children)`)
      addDir(path, e.mode ?? 0o755)
      continue
    }
    if (seen.has(path)) throw new Error(`cpio: ${path} listed twice`)
    addParents(path)
    seen.add(path)
    switch (e.type) {
      case 'file': {
        const data = typeof e.data === 'string' ? Buffer.from(e.data, 'utf8') : Buffer.from(e.data)
        emit(path, S_IFREG | (e.mode ?? 0o644), 1, data, [0, 0])
        break
      }
      case 'symlink':
        // The link target is the entry's data, without a terminating NUL (buffer-format.rst).
        emit(path, S_IFLNK | 0o777, 1, Buffer.from(e.target, 'utf8'), [0, 0])
        break
      case 'char':
      case 'block':
        emit(path, (e.type === 'char' ? S_IFCHR : S_IFBLK) | (e.mode ?? 0o600), 1, Buffer.alloc(0), [
          e.major,
          e.minor,
        ])
        break
    }
  }
  emit(TRAILER, 0, 1, Buffer.alloc(0), [0, 0])
  return Buffer.concat(chunks)
}

/** The archive compressed as the kernel's CONFIG_RD_GZIP expects (a gzip member). */
export function gzipCpio(archive: Uint8Array): Buffer {
  return gzipSync(archive, { level: 9 })
}

// What an initrd's own headers promise, checked before the guest sees it: Linux unpacks an
// initramfs (init/initramfs.c, Documentation/driver-api/early-userspace/buffer-format.rst) as a
// sequence of cpio "newc" archives, each maybe compressed, with zero padding between them. A
// truncated archive would otherwise surface as a guest panic ("junk in compressed archive", no
// /init). What this checks: every newc header, name and file body lies in the file and each
// archive ends with TRAILER!!!; a gzip member inflates completely (then its cpio is checked the
// same way). Other compressions (xz, zstd, lz4, ...) and old-style ramdisk images are handed over
// as they are: the VMM has no decoder for them, and a non-cpio initrd is a valid ramdisk image.
import { gunzipSync } from 'node:zlib'
import { hex } from '@vmm/core'
import { BootError } from './errors.js'

const NEWC_HEADER = 110
/** Plain arithmetic: offsets past 2^31 must not turn negative as `(n + 3) & ~3` does. */
const align4 = (n: number) => Math.ceil(n / 4) * 4

function isNewc(b: Uint8Array, at: number): boolean {
  // "070701" (newc) or "070702" (newc with CRC)
  return (
    at + 6 <= b.length &&
    b[at] === 0x30 &&
    b[at + 1] === 0x37 &&
    b[at + 2] === 0x30 &&
    b[at + 3] === 0x37 &&
    b[at + 4] === 0x30 &&
    (b[at + 5] === 0x31 || b[at + 5] === 0x32)
  )
}

const isGzip = (b: Uint8Array, at: number) => b[at] === 0x1f && (b[at + 1] === 0x8b || b[at + 1] === 0x9e)

/** Throws a BootError naming the file, the header and the offset when `bytes` is a broken initramfs. */
export function checkInitrd(bytes: Uint8Array, name: string): void {
  if (bytes.length === 0) throw new BootError('BAD_INITRD', `${name}: the initrd is empty`)
  checkArchives(bytes, name, '')
}

function checkArchives(b: Uint8Array, name: string, inside: string): void {
  let at = 0
  // Only a stream that starts as an initramfs is parsed: anything else is an old-style ramdisk.
  if (!isNewc(b, 0) && !isGzip(b, 0)) return
  while (at < b.length) {
    if (b[at] === 0) {
      at++
      continue
    }
    if (isNewc(b, at)) at = checkCpio(b, at, name, inside)
    else if (isGzip(b, at)) {
      let inflated: Uint8Array
      try {
        inflated = gunzipSync(b.subarray(at))
      } catch (e) {
        throw new BootError(
          'BAD_INITRD',
          `${name}:${inside} the gzip archive at offset ${at} does not inflate: ${(e as Error).message}`,
          { cause: e },
        )
      }
      checkArchives(inflated, name, `${inside} (in the gzip archive at offset ${at})`)
      return // gunzip consumed every member to the end of the file
    } else return // another compression: handed to the kernel as it is
  }
}

/** Walks one newc archive from `start`; returns the offset after its TRAILER!!! entry. */
function checkCpio(b: Uint8Array, start: number, name: string, inside: string): number {
  const fail = (what: string) =>
    new BootError('BAD_INITRD', `${name}:${inside} truncated cpio archive: ${what}`)
  let at = start
  for (;;) {
    if (at + NEWC_HEADER > b.length)
      throw fail(`the entry header at offset ${at} needs ${NEWC_HEADER} bytes, the data has ${b.length}`)
    if (!isNewc(b, at)) throw fail(`no newc magic "070701" at offset ${at} where an entry header should be`)
    const field = (i: number) => {
      const text = String.fromCharCode(...b.subarray(at + 6 + 8 * i, at + 14 + 8 * i))
      if (!/^[0-9a-fA-F]{8}$/.test(text))
        throw fail(
          `field ${i} of the entry header at offset ${at} is not 8 hex digits (${JSON.stringify(text)})`,
        )
      return Number.parseInt(text, 16)
    }
    const fileSize = field(6)
    const nameSize = field(11)
    const nameEnd = at + NEWC_HEADER + nameSize
    if (nameSize === 0 || nameEnd > b.length)
      throw fail(`the entry at offset ${at} names ${nameSize} bytes (c_namesize), past the end (${b.length})`)
    const entryName = String.fromCharCode(...b.subarray(at + NEWC_HEADER, nameEnd - 1))
    const dataAt = start + align4(nameEnd - start)
    const dataEnd = dataAt + fileSize
    if (dataEnd > b.length)
      throw fail(
        `${JSON.stringify(entryName)} at offset ${at} promises ${fileSize} bytes (c_filesize) at ${hex(dataAt)}, the data ends at ${hex(b.length)}`,
      )
    at = start + align4(dataEnd - start)
    if (entryName === 'TRAILER!!!') return Math.min(at, b.length)
  }
}

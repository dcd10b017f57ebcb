import { type GuestMemory, GuestMemoryError, guestAddress } from '@vmm/core'
import type { GuestBuffer } from './split-queue.js'

// Moving bytes between the host and a chain's buffers. Offsets count from the start of the chain's
// readable (or writable) bytes, so a device parses a request without caring where descriptors split.

const PAGE = 4096

/** Copies chain bytes [skip, skip + into.length) into `into`; returns how many there were. */
export function gather(
  memory: GuestMemory,
  buffers: readonly GuestBuffer[],
  skip: number,
  into: Uint8Array,
): number {
  let done = 0
  forEachPiece(buffers, skip, into.length, (address, length) => {
    memory.read(guestAddress(address), into.subarray(done, done + length))
    done += length
  })
  return done
}

/** Copies `data` into the chain's bytes from `skip`; returns how many fitted. */
export function scatter(
  memory: GuestMemory,
  buffers: readonly GuestBuffer[],
  skip: number,
  data: Uint8Array,
): number {
  let done = 0
  forEachPiece(buffers, skip, data.length, (address, length) => {
    memory.write(guestAddress(address), data.subarray(done, done + length))
    done += length
  })
  return done
}

/**
 * Zero-copy views of chain bytes [skip, skip + length) (all of them when length is omitted), for
 * handing guest memory straight to readv/writev. A buffer that is not one piece of host memory
 * (it straddles RAM chunks or memory slots) is split at page boundaries, where those can change.
 */
export function views(
  memory: GuestMemory,
  buffers: readonly GuestBuffer[],
  skip = 0,
  length = Number.POSITIVE_INFINITY,
): Uint8Array[] {
  const out: Uint8Array[] = []
  forEachPiece(buffers, skip, length, (address, n) => {
    try {
      out.push(memory.slice(guestAddress(address), n))
    } catch (e) {
      if (!(e instanceof GuestMemoryError && e.code === 'NOT_CONTIGUOUS')) throw e
      for (let at = address; at < address + n; ) {
        const end = Math.min(address + n, (Math.floor(at / PAGE) + 1) * PAGE)
        out.push(memory.slice(guestAddress(at), end - at))
        at = end
      }
    }
  })
  return out
}

function forEachPiece(
  buffers: readonly GuestBuffer[],
  skip: number,
  length: number,
  visit: (address: number, length: number) => void,
): void {
  let left = length
  let offset = skip
  for (const b of buffers) {
    if (left <= 0) return
    if (offset >= b.length) {
      offset -= b.length
      continue
    }
    const n = Math.min(b.length - offset, left)
    visit(b.address + offset, n)
    left -= n
    offset = 0
  }
}

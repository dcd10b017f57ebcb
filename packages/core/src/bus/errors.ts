import { hex } from '../address.js'

/** Why a bus refused a range: the closed set callers switch on. */
export type BusErrorCode =
  /** A window of zero (or negative, or fractional) size. */
  | 'ZERO_SIZE'
  /** base + size runs past the end of the bus's address space. */
  | 'OVERFLOW'
  /** The window intersects one already on the bus. */
  | 'OVERLAP'
  /** remove() of a window that is not on the bus. */
  | 'NOT_FOUND'

export class BusError extends Error {
  override readonly name = 'BusError'
  constructor(
    readonly code: BusErrorCode,
    readonly bus: 'pio' | 'mmio',
    readonly base: number,
    readonly size: number,
    /** For OVERLAP: the base of the window already there. */
    readonly existingBase?: number,
  ) {
    const range = `[${hex(base)}, +${hex(size)})`
    const why = {
      ZERO_SIZE: 'has no size',
      OVERFLOW: 'runs past the end of the bus',
      OVERLAP: `overlaps the window at ${hex(existingBase ?? 0)}`,
      NOT_FOUND: 'is not on the bus',
    }[code]
    super(`${bus} window ${range} ${why}`)
  }
}

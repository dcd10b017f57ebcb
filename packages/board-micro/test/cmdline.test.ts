// Devices the guest cannot discover announce themselves on the kernel command line.
import { describe, expect, it } from 'vitest'
import { withDeviceParameters } from '../src/linux.js'

describe('kernel command line with device parameters', () => {
  const rng = 'virtio_mmio.device=4K@0xc0001000:5'
  const blk = 'virtio_mmio.device=4K@0xc0002000:6'

  it('appends what the devices announce, in build order', () => {
    expect(withDeviceParameters('console=ttyS0 panic=1', [rng, blk])).toBe(
      `console=ttyS0 panic=1 ${rng} ${blk}`,
    )
  })

  it('does not repeat a parameter the manifest already has, or one announced twice', () => {
    expect(withDeviceParameters(`console=ttyS0 ${rng}`, [rng, blk, blk])).toBe(`console=ttyS0 ${rng} ${blk}`)
  })

  it('keeps the command line as written when nothing is announced, and copes with an empty one', () => {
    expect(withDeviceParameters('  console=ttyS0  quiet ', [])).toBe('console=ttyS0  quiet')
    expect(withDeviceParameters('', [rng])).toBe(rng)
  })
})

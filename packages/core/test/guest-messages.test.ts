import { describe, expect, it } from 'vitest'
import { GuestMessageLimiter } from '../src/machine/guest-messages.js'

describe('GuestMessageLimiter', () => {
  it('writes the first few per key and interval, then counts and summarises the rest', () => {
    const lines: string[] = []
    let now = 0
    const limiter = new GuestMessageLimiter({
      burst: 2,
      intervalMs: 1000,
      write: (l) => lines.push(l),
      now: () => now,
    })
    for (let i = 0; i < 11_000; i++) limiter.report('blk0: needs reset', `blk0: device needs reset: #${i}`)
    limiter.report('net0: needs reset', 'net0: device needs reset: bad')
    expect(lines).toEqual([
      'vmm: blk0: device needs reset: #0',
      'vmm: blk0: device needs reset: #1',
      'vmm: net0: device needs reset: bad',
    ])
    now = 1500
    limiter.report('blk0: needs reset', 'blk0: device needs reset: later')
    limiter.flush()
    expect(lines.slice(3)).toEqual([
      'vmm: blk0: needs reset: 10998 more such messages suppressed (at most 2 per 1 s)',
      'vmm: blk0: device needs reset: later',
    ])
  })
})

// eventfds and their event-loop watch: what ioeventfd and irqfd signal through.
import { describe, expect, it } from 'vitest'
import { discardGuestPages, EventFd } from '../src/index.js'

describe('EventFd', () => {
  it('adds up writes until a read takes the counter, then reads 0n', () => {
    const e = EventFd.create()
    try {
      expect(e.read()).toBe(0n)
      e.write()
      e.write(4n)
      expect(e.read()).toBe(5n)
      expect(e.read()).toBe(0n)
    } finally {
      e.close()
      e.close()
    }
  })

  it('calls onSignal on the event loop with the count, and stops after close', async () => {
    const e = EventFd.create()
    const seen: bigint[] = []
    const got = new Promise<void>((resolve) =>
      e.onSignal((count) => {
        seen.push(count)
        resolve()
      }),
    )
    e.write(3n)
    await got
    expect(seen).toEqual([3n])
    e.close()
  })

  it('reports a write to a closed fd with errno', () => {
    const e = EventFd.create()
    e.close()
    expect(() => e.write()).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'write' }))
  })
})

describe('discardGuestPages', () => {
  it('refuses a range that is not page-aligned or not inside the chunk', () => {
    const chunk = new ArrayBuffer(8192)
    expect(() => discardGuestPages(chunk, 100, 4096)).toThrow(RangeError)
    expect(() => discardGuestPages(chunk, 4096, 8192)).toThrow(RangeError)
  })
})

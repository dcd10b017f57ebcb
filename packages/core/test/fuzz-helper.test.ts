// The fuzz helper (src/testing/fuzz.ts): a long property runs in chunks with the event loop
// served between them (what keeps vitest's worker answering at 100,000 cases), every case run
// once, and VMM_FUZZ_SEED replays as the first chunk's seed.
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { FUZZ_CHUNK, fuzz } from '../src/testing/fuzz.js'

const saved = { runs: process.env.VMM_FUZZ_RUNS, seed: process.env.VMM_FUZZ_SEED }
afterEach(() => {
  for (const [k, v] of [
    ['VMM_FUZZ_RUNS', saved.runs],
    ['VMM_FUZZ_SEED', saved.seed],
  ] as const)
    if (v === undefined) delete process.env[k]
    else process.env[k] = v
})

describe('fuzz (chunked fast-check runs)', () => {
  it('runs VMM_FUZZ_RUNS cases in chunks and lets timers fire between chunks', async () => {
    process.env.VMM_FUZZ_RUNS = String(FUZZ_CHUNK * 3 + 7)
    delete process.env.VMM_FUZZ_SEED
    let cases = 0
    let ticks = 0
    // A chain of setImmediate callbacks stands for the worker's I/O: it advances only when the
    // loop turns, which a synchronous fc.assert never lets it do.
    let running = true
    const tick = () => {
      ticks++
      if (running) setImmediate(tick)
    }
    setImmediate(tick)
    const chunks: number[] = []
    await fuzz((p) => {
      chunks.push(p.numRuns)
      const before = ticks
      fc.assert(
        fc.property(fc.integer(), () => {
          cases++
        }),
        p,
      )
      expect(ticks).toBe(before) // a chunk itself is synchronous
    })
    running = false
    expect(chunks).toEqual([FUZZ_CHUNK, FUZZ_CHUNK, FUZZ_CHUNK, 7])
    expect(cases).toBe(FUZZ_CHUNK * 3 + 7)
    expect(ticks).toBeGreaterThanOrEqual(3) // the event loop ran between the chunks
  })

  it('uses the quick count without VMM_FUZZ_RUNS, in one chunk', async () => {
    delete process.env.VMM_FUZZ_RUNS
    const seen: number[] = []
    await fuzz((p) => void seen.push(p.numRuns), 40)
    expect(seen).toEqual([40])
  })

  it('seeds chunk i with VMM_FUZZ_SEED + i, so a reported seed replays as the first chunk', async () => {
    process.env.VMM_FUZZ_RUNS = String(FUZZ_CHUNK * 2)
    process.env.VMM_FUZZ_SEED = '-5'
    const seeds: (number | undefined)[] = []
    await fuzz((p) => void seeds.push(p.seed))
    expect(seeds).toEqual([-5, -4])
  })

  it('a failing chunk fails the whole run with fast-check report (seed included)', async () => {
    process.env.VMM_FUZZ_RUNS = String(FUZZ_CHUNK * 2)
    process.env.VMM_FUZZ_SEED = '42'
    await expect(
      fuzz((p) =>
        fc.assert(
          fc.property(fc.integer({ min: 0, max: 100 }), (n) => n < 100),
          p,
        ),
      ),
    ).rejects.toThrow(/seed: 4[23]/)
  })
})

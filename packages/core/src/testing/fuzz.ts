// How many cases a property test runs. `pnpm test` runs every property with its small count, so
// they stay green on every commit; `pnpm fuzz` sets VMM_FUZZ_RUNS (100,000 by default) and runs
// only the files named `*.fuzz.test.ts`, with no per-test timeout. VMM_FUZZ_SEED replays a
// failure that fast-check reported (it prints the seed and the path of the shrunk case).

/** Cases for one property: VMM_FUZZ_RUNS when set (`pnpm fuzz`), else `quick`. */
export function fuzzRuns(quick = 200): number {
  const fromEnv = Number(process.env.VMM_FUZZ_RUNS)
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : quick
}

/** fast-check's `numRuns` and `seed` parameters (structurally; core does not depend on fast-check). */
export interface FuzzParameters {
  numRuns: number
  seed?: number
}

/** fast-check parameters for one property: the run count above and VMM_FUZZ_SEED if set. */
export function fuzzParameters(quick = 200): FuzzParameters {
  const seed = Number(process.env.VMM_FUZZ_SEED)
  return Number.isInteger(seed) ? { numRuns: fuzzRuns(quick), seed } : { numRuns: fuzzRuns(quick) }
}

/** Cases per fast-check run inside `fuzz`: long enough to be cheap, short enough to yield often. */
export const FUZZ_CHUNK = 1000

/**
 * Runs a property for fuzzRuns(quick) cases in chunks of FUZZ_CHUNK, each its own fast-check run
 * with its own seed (`VMM_FUZZ_SEED` + chunk index when set, else random), yielding to the event
 * loop between chunks: `await fuzz((p) => fc.assert(fc.property(...), p), 300)`.
 *
 * Why: a synchronous `fc.assert` at 100,000 cases holds its vitest worker for minutes, and vitest
 * then reports "Timeout calling onTaskUpdate" and fails the run although every case passed
 * (issue 13). An `await` inside fc.asyncProperty does not help: a resolved promise yields to
 * microtasks only, never to the worker's I/O. Replay: a failure in any chunk prints that chunk's
 * seed; VMM_FUZZ_SEED=<that seed> runs it as the first chunk, which finds the same case.
 */
export async function fuzz(
  check: (parameters: FuzzParameters) => void | Promise<void>,
  quick = 200,
): Promise<void> {
  const total = fuzzRuns(quick)
  const given = Number(process.env.VMM_FUZZ_SEED)
  // fast-check seeds are 32-bit integers.
  const base = Number.isInteger(given) ? given : (Math.random() * 0x1_0000_0000) | 0
  for (let done = 0, chunk = 0; done < total; done += FUZZ_CHUNK, chunk++) {
    await check({ numRuns: Math.min(FUZZ_CHUNK, total - done), seed: (base + chunk) | 0 })
    if (done + FUZZ_CHUNK < total) await new Promise<void>((r) => setImmediate(r))
  }
}

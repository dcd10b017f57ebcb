// How many cases a property test runs. `pnpm test` runs every property with its small count, so
// they stay green on every commit; `pnpm fuzz` sets VMM_FUZZ_RUNS (100,000 by default) and runs
// only the files named `*.fuzz.test.ts`, with no per-test timeout. VMM_FUZZ_SEED replays a
// failure that fast-check reported (it prints the seed and the path of the shrunk case).

/** Cases for one property: VMM_FUZZ_RUNS when set (`pnpm fuzz`), else `quick`. */
export function fuzzRuns(quick = 200): number {
  const fromEnv = Number(process.env.VMM_FUZZ_RUNS)
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : quick
}

/** fast-check parameters for one property: the run count above and VMM_FUZZ_SEED if set. */
export function fuzzParameters(quick = 200): { numRuns: number; seed?: number } {
  const seed = Number(process.env.VMM_FUZZ_SEED)
  return Number.isInteger(seed) ? { numRuns: fuzzRuns(quick), seed } : { numRuns: fuzzRuns(quick) }
}

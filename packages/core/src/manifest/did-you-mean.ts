// "did you mean" for a misspelled name: the closest allowed name by edit distance, when it is
// close enough to be a typo rather than a different word.

/** Levenshtein distance (insertions, deletions, substitutions), case-insensitive. */
function distance(a: string, b: string): number {
  a = a.toLowerCase()
  b = b.toLowerCase()
  let row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++)
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    row = next
  }
  return row[b.length]!
}

/**
 * The allowed name closest to `name`, or undefined when none is within a third of its length
 * (at least 1, at most 3 edits): `virtio-bkl` → `virtio-blk`, `readonly` → `readOnly`.
 */
export function closest(name: string, allowed: readonly string[]): string | undefined {
  const limit = Math.min(3, Math.max(1, Math.floor(name.length / 3)))
  let best: string | undefined
  let bestDistance = limit + 1
  for (const candidate of allowed) {
    const d = distance(name, candidate)
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best
}

/** `; did you mean "x"?` when a close name exists, else nothing. */
export function didYouMean(name: string, allowed: readonly string[]): string {
  const c = closest(name, allowed)
  return c === undefined || c === name ? '' : ` (did you mean "${c}"?)`
}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 2 ** 10,
  kib: 2 ** 10,
  m: 2 ** 20,
  mib: 2 ** 20,
  g: 2 ** 30,
  gib: 2 ** 30,
  t: 2 ** 40,
  tib: 2 ** 40,
}

/**
 * Parses a byte size as people write them in manifests: 4096, 0x1000, "64MiB", "64 M", "1.5GiB".
 * Units are binary (K = KiB), as memory sizes always are. Undefined when `value` is not a size.
 */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined
  if (typeof value !== 'string') return undefined
  const m = /^\s*(0x[0-9a-f]+|\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value)
  const unit = UNITS[m?.[2]?.toLowerCase() ?? 'x']
  if (!m || unit === undefined) return undefined
  const n = m[1]!.startsWith('0x') || m[1]!.startsWith('0X') ? Number.parseInt(m[1]!, 16) : Number(m[1])
  const bytes = n * unit
  return Number.isSafeInteger(bytes) ? bytes : undefined
}

/** 65536 -> "64 KiB"; exact sizes only get a unit. */
export function formatSize(bytes: number): string {
  for (const [unit, n] of [
    ['TiB', 2 ** 40],
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ] as const) {
    if (bytes >= n && bytes % n === 0) return `${bytes / n} ${unit}`
  }
  return `${bytes} bytes`
}

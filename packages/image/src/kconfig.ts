// Reading kconfig fragments and .config files, and checking that a built .config honours a
// fragment. The syntax is the one kconfig writes and scripts/kconfig/merge_config.sh reads
// (Documentation/kbuild/kconfig.rst): `CONFIG_FOO=y|m|<number>|"string"`, and
// `# CONFIG_FOO is not set` for an off bool/tristate; other `#` lines are comments.

/** A value as written after `=`; "n" stands for `# CONFIG_X is not set`. */
export type KconfigValue = string

const SET = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/
const NOT_SET = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/

/**
 * Parses a fragment or a .config into option -> value, in file order. Malformed lines are an
 * error naming the line (a typo in our fragment must not pass as a comment). With `strict`
 * false (for a kernel-written .config) anything unrecognised is skipped.
 */
export function parseKconfig(text: string, source = 'config', strict = true): Map<string, KconfigValue> {
  const out = new Map<string, KconfigValue>()
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim()
    if (line === '') continue
    const set = SET.exec(line)
    if (set) {
      const [, name, value] = set as unknown as [string, string, string]
      if (strict && value === '') throw new Error(`${source}:${i + 1}: ${name} has an empty value`)
      if (strict && out.has(name)) throw new Error(`${source}:${i + 1}: ${name} is set twice`)
      out.set(name, value)
      continue
    }
    const notSet = NOT_SET.exec(line)
    if (notSet) {
      const name = notSet[1]!
      if (strict && out.has(name)) throw new Error(`${source}:${i + 1}: ${name} is set twice`)
      out.set(name, 'n')
      continue
    }
    if (line.startsWith('#')) {
      // A comment that looks like a mistyped "is not set" line would silently change nothing.
      if (strict && /^#\s*CONFIG_[A-Za-z0-9_]+\s+is\s+not\s+set/.test(line) && !NOT_SET.test(line))
        throw new Error(`${source}:${i + 1}: malformed "is not set" line: ${line}`)
      continue
    }
    if (strict) throw new Error(`${source}:${i + 1}: not a kconfig line: ${line}`)
  }
  return out
}

export interface KconfigMismatch {
  option: string
  wanted: KconfigValue
  /** The value in the final .config; undefined when the option does not appear at all. */
  got: KconfigValue | undefined
}

/**
 * The options of `fragment` that the final `.config` does not honour. kconfig drops a requested
 * option without an error when its dependencies are off (merge_config.sh only warns, and not
 * in -m mode), so the builder calls this after `make olddefconfig` and fails on any mismatch.
 * An option absent from .config counts as off (kconfig omits symbols whose menu is invisible).
 */
export function checkKconfig(
  fragment: ReadonlyMap<string, KconfigValue>,
  final: ReadonlyMap<string, KconfigValue>,
): KconfigMismatch[] {
  const mismatches: KconfigMismatch[] = []
  for (const [option, wanted] of fragment) {
    const got = final.get(option)
    const ok = wanted === 'n' ? got === undefined || got === 'n' : got === wanted
    if (!ok) mismatches.push({ option, wanted, got })
  }
  return mismatches
}

export function describeMismatches(mismatches: readonly KconfigMismatch[]): string {
  return mismatches
    .map(({ option, wanted, got }) => {
      const w = wanted === 'n' ? 'not set' : `=${wanted}`
      const g = got === undefined ? 'absent' : got === 'n' ? 'not set' : `=${got}`
      return `  ${option}: wanted ${w}, got ${g}`
    })
    .join('\n')
}

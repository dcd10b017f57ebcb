// apt's answers, remembered while apt's inputs stay the same. Resolving the default guest's cache
// key asks `apt-cache policy` for a candidate version, which reads every package list and takes
// ~0.4 s here: every `vmm-oci create` paid it (bench:containers) although the answer changes only
// when the lists, the installed packages or apt's configuration change. So the answer is kept in
// the cache directory beside a signature of those inputs (each one's size and mtime, or its
// absence) and asked again as soon as any of them differs. `apt-get update` rewrites the lists
// (renames files into /var/lib/apt/lists: the directory's mtime changes), dpkg rewrites its
// status file, and an edit of sources or preferences changes their files or directories.
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** What `apt-cache policy`'s candidate depends on (apt.conf(5), apt_preferences(5), sources.list(5)). */
export const APT_INPUTS = [
  '/var/lib/apt/lists',
  '/var/lib/dpkg/status',
  '/etc/apt/sources.list',
  '/etc/apt/sources.list.d',
  '/etc/apt/preferences',
  '/etc/apt/preferences.d',
  '/etc/apt/apt.conf.d',
] as const

/** One line per input: its size and mtime in nanoseconds, or that it is absent. */
export function aptSignature(paths: readonly string[] = APT_INPUTS): string {
  return paths
    .map((p) => {
      try {
        const s = statSync(p, { bigint: true })
        return `${p} ${s.size} ${s.mtimeNs}`
      } catch {
        return `${p} absent`
      }
    })
    .join('\n')
}

interface Memo {
  signature: string
  answers: Record<string, string>
}

function readMemo(file: string): Memo | undefined {
  try {
    const m = JSON.parse(readFileSync(file, 'utf8')) as Memo
    return typeof m.signature === 'string' && m.answers && typeof m.answers === 'object' ? m : undefined
  } catch {
    return undefined // absent or unreadable: ask apt
  }
}

/**
 * `ask(question)`'s answer, from `<dir>/apt-answers.json` when it was recorded under the same
 * signature, else asked and recorded (written to a temporary file and renamed: a reader never
 * sees half a file). A memo that cannot be written only costs the next call its question.
 */
export async function rememberedAnswer(
  dir: string,
  question: string,
  ask: (question: string) => Promise<string>,
  signature: string = aptSignature(),
): Promise<string> {
  const file = join(dir, 'apt-answers.json')
  const memo = readMemo(file)
  const known = memo?.signature === signature ? memo.answers[question] : undefined
  if (known !== undefined) return known
  const answer = await ask(question)
  const answers =
    memo?.signature === signature ? { ...memo.answers, [question]: answer } : { [question]: answer }
  try {
    mkdirSync(dir, { recursive: true })
    const tmp = `${file}.tmp-${process.pid}`
    writeFileSync(tmp, `${JSON.stringify({ signature, answers } satisfies Memo)}\n`)
    renameSync(tmp, file)
  } catch {
    // A read-only cache: nothing remembered.
  }
  return answer
}

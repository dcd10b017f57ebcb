// Signal arguments of `kill` as runc takes them: a number ("9") or a name with or without SIG
// ("KILL", "SIGKILL", "kill"), checked against the host's table (os.constants.signals).
import { constants } from 'node:os'
import { OciError } from './errors.js'

const byName = constants.signals as Record<string, number>

export function parseSignal(arg: string | undefined): number {
  if (arg === undefined || arg === '') return byName.SIGTERM!
  if (/^\d+$/.test(arg)) {
    const n = Number(arg)
    if (n >= 1 && n <= 64) return n
    throw new OciError(`invalid signal: ${arg}`)
  }
  const name = arg.toUpperCase()
  const n = byName[name.startsWith('SIG') ? name : `SIG${name}`]
  if (n === undefined) throw new OciError(`unknown signal "${arg}"`)
  return n
}

/**
 * The signals a container's host processes (the sandbox, each exec's proxy) catch and pass on to
 * the guest process, with their numbers (the host's: both sides are Linux on x86-64). SIGKILL and
 * SIGSTOP cannot be caught; `kill ID 9` ends the sandbox and its VM instead.
 */
export const FORWARDED_SIGNALS: readonly (readonly [NodeJS.Signals, number])[] = (
  ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGALRM', 'SIGCONT'] as const
).map((s) => [s, byName[s]!] as const)

export function signalName(n: number): string {
  return Object.entries(byName).find(([, v]) => v === n)?.[0] ?? `signal ${n}`
}

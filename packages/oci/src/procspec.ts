// A config.md "Process" as the agent's 'S' records: a args, e env, c cwd, u uid, g gid, G
// additional gids, l rlimits ("RESOURCE SOFT HARD"), k umask (octal), t terminal, w wait for
// start (the container's init waits for `start`; exec processes run at once), P a new PID
// namespace for it (agent/pidns.c; exec processes join the init's).
import { type Process, RLIMITS, type Spec } from './config.js'
import type { Records } from './protocol.js'

/**
 * Whether the container's init gets a PID namespace of its own in the guest, where it is PID 1 as
 * under runc: when the bundle asks for a new one (config-linux.md "Namespaces": a `pid` entry
 * without a path). Without the entry it shares the guest's (the runtime's) namespace, as the spec
 * says; a path is refused by checkSpec.
 */
export function newPidNamespace(spec: Spec): boolean {
  return spec.linux?.namespaces?.some((ns) => ns.type === 'pid' && ns.path === undefined) ?? false
}

export function processRecords(p: Process, wait: boolean, newPidNs = false): Records {
  const r: [string, string][] = []
  for (const a of p.args) r.push(['a', a])
  for (const e of p.env ?? []) r.push(['e', e])
  r.push(['c', p.cwd], ['u', String(p.user?.uid ?? 0)], ['g', String(p.user?.gid ?? 0)])
  for (const g of p.user?.additionalGids ?? []) r.push(['G', String(g)])
  for (const l of p.rlimits ?? []) r.push(['l', `${RLIMITS[l.type]} ${l.soft} ${l.hard}`])
  if (p.user?.umask !== undefined) r.push(['k', p.user.umask.toString(8)])
  if (p.terminal) r.push(['t', '1'])
  if (wait) r.push(['w', '1'])
  if (newPidNs) r.push(['P', '1'])
  return r
}

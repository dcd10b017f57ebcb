// A config.md "Process" as the agent's 'S' records: a args, e env, c cwd, u uid, g gid, G
// additional gids, l rlimits ("RESOURCE SOFT HARD"), k umask (octal), t terminal, w wait for
// start (the container's init waits for `start`; exec processes run at once).
import { type Process, RLIMITS } from './config.js'
import type { Records } from './protocol.js'

export function processRecords(p: Process, wait: boolean): Records {
  const r: [string, string][] = []
  for (const a of p.args) r.push(['a', a])
  for (const e of p.env ?? []) r.push(['e', e])
  r.push(['c', p.cwd], ['u', String(p.user?.uid ?? 0)], ['g', String(p.user?.gid ?? 0)])
  for (const g of p.user?.additionalGids ?? []) r.push(['G', String(g)])
  for (const l of p.rlimits ?? []) r.push(['l', `${RLIMITS[l.type]} ${l.soft} ${l.hard}`])
  if (p.user?.umask !== undefined) r.push(['k', p.user.umask.toString(8)])
  if (p.terminal) r.push(['t', '1'])
  if (wait) r.push(['w', '1'])
  return r
}

// Reading a process's memory from /proc (Linux, Documentation/filesystems/proc.rst §1.1:
// smaps and smaps_rollup), for every bench that reports memory. All figures in KiB.
import { readFileSync } from 'node:fs'

function fields(text) {
  const out = {}
  for (const line of text.split('\n')) {
    const m = /^(\w+):\s+(\d+) kB/.exec(line)
    if (m) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2])
  }
  return out
}

/** Each mapping of `pid`: its header line, its path and its fields (`f.Size`, `f.Rss`, ...). */
export function mappings(pid) {
  const list = []
  let cur
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      cur = { header: line, path: line.split(/\s+/).slice(5).join(' '), f: {} }
      list.push(cur)
      continue
    }
    const m = /^(\w+):\s+(\d+) kB/.exec(line)
    if (m && cur) cur.f[m[1]] = Number(m[2])
  }
  return list
}

/** Guest RAM: the mapping(s) the size of guest memory (within 4 MiB of alignment slack). */
export const isGuestRam = (m, guestMiB) => m.f.Size >= guestMiB * 1024 && m.f.Size <= guestMiB * 1024 + 4096

/** The whole process's RSS, and the RSS of its guest-RAM mapping(s). */
export function rssWithGuest(pid, guestMiB) {
  let total = 0
  let guest = 0
  for (const m of mappings(pid)) {
    total += m.f.Rss
    if (isGuestRam(m, guestMiB)) guest += m.f.Rss
  }
  return { total, guest }
}

/** RSS, PSS, USS of the whole process, and what of each the guest-RAM mapping holds. */
export function sample(pid, guestMiB) {
  const r = fields(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))
  let guest = 0
  let guestUss = 0
  let guestPss = 0
  for (const m of mappings(pid)) {
    if (!isGuestRam(m, guestMiB)) continue
    guest += m.f.Rss
    guestUss += m.f.Private_Clean + m.f.Private_Dirty
    guestPss += m.f.Pss
  }
  return {
    rss: r.Rss,
    pss: r.Pss - guestPss + guest, // report() subtracts `guest`
    uss: r.Private_Clean + r.Private_Dirty - guestUss + guest,
    guest,
  }
}

/** Where the private memory (USS) of `pid` is, by kind of mapping, largest first (not guest RAM). */
export function breakdown(pid, guestMiB) {
  const by = new Map()
  const add = (k, v) => by.set(k, (by.get(k) ?? 0) + v)
  for (const m of mappings(pid)) {
    if (isGuestRam(m, guestMiB)) continue
    const priv = m.f.Private_Clean + m.f.Private_Dirty
    if (priv === 0) continue
    let kind =
      m.path ||
      `anonymous (${m.f.Size >= 65536 ? '>= 64 MiB reserved: a malloc arena or the V8 heap' : `${Math.ceil(m.f.Size / 1024)} MiB mapping`})`
    if (/\.so(\.|$)|\/node$|\.node$/.test(kind)) kind = `${kind.replace(/.*\//, '')} (code and data)`
    add(kind, priv)
  }
  return [...by].sort((a, b) => b[1] - a[1]).slice(0, 14)
}

// The owner record of a jail directory and the sweep of those whose owner is gone (jail/owner.ts),
// on real directories under a temporary chroot base: what goes is only what a record of a gone
// owner names, by rmdir; everything else stays, and what had to stay is named.
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { removeOwner, sweepLeftovers, writeOwner } from '../src/jail/owner.js'

const bases: string[] = []
afterEach(() => {
  for (const d of bases.splice(0)) rmSync(d, { recursive: true, force: true })
})

/** A jail directory `name` under `base`, with a root, whose record is ours with `edit` applied. */
function jailDir(base: string, name: string, edit: (record: string) => string = (r) => r): string {
  const dir = join(base, name)
  mkdirSync(join(dir, 'root'), { recursive: true })
  writeOwner(dir)
  writeFileSync(join(dir, 'owner'), edit(readFileSync(join(dir, 'owner'), 'utf8')))
  return dir
}

describe('jail owner records', () => {
  it('names this process by pid, start time, boot and pid namespace', () => {
    const base = mkdtempSync(join(tmpdir(), 'vmm-owner-'))
    bases.push(base)
    const dir = jailDir(base, 'a')
    const record = readFileSync(join(dir, 'owner'), 'utf8')
    const stat = readFileSync('/proc/self/stat', 'utf8')
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
    expect(record).toBe(
      `vmm-jail-owner 1\nboot ${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()}\n` +
        `pidns ${readlinkSync('/proc/self/ns/pid')}\npid ${process.pid}\nstart ${start}\n`,
    )
    expect(() => writeOwner(dir)).toThrow(/EEXIST/) // never over another record
    removeOwner(dir)
    expect(readdirSync(dir)).toEqual(['root'])
  })

  it('the sweep removes the jails of gone owners, and leaves live ones, foreign ones and filled ones', () => {
    const base = mkdtempSync(join(tmpdir(), 'vmm-owner-'))
    bases.push(base)
    jailDir(base, 'live') // this process: alive
    jailDir(base, 'reused', (r) => r.replace(/^start \d+$/m, 'start 1')) // its pid, another process
    jailDir(base, 'rebooted', (r) => r.replace(/^boot .*$/m, 'boot 00000000-0000-0000-0000-000000000000'))
    jailDir(base, 'elsewhere', (r) =>
      r.replace(/^pidns .*$/m, 'pidns pid:[1]').replace(/^start \d+$/m, 'start 1'),
    )
    const filled = jailDir(base, 'filled', (r) => r.replace(/^start \d+$/m, 'start 1'))
    writeFileSync(join(filled, 'root', 'theirs'), 'keep me')
    mkdirSync(join(base, 'no-record', 'root'), { recursive: true })
    jailDir(base, 'not-ours', () => 'something else\npid 1\nstart 1\n')
    const left = sweepLeftovers(base)
    expect(left).toEqual([`${join(filled, 'root')} (ENOTEMPTY; left by pid ${process.pid})`])
    expect(readdirSync(base).sort()).toEqual(['elsewhere', 'filled', 'live', 'no-record', 'not-ours'])
    expect(readFileSync(join(filled, 'root', 'theirs'), 'utf8')).toBe('keep me')
    expect(readdirSync(filled).sort()).toEqual(['owner', 'root']) // kept with its record, for a later sweep
    expect(sweepLeftovers(join(base, 'none'))).toEqual([]) // no chroot base yet: nothing to do
  })
})

// vmm-jail's records for a VMM whose caller hands it open files and goes away (the OCI sandbox,
// packages/oci/src/sandbox-jail.ts): `fd <src> <dst>` (kept through the close of inherited fds,
// moved to <dst> for the exec, and not left open in the supervisor or the jail's init), `ctty`
// (the VMM leads a session whose controlling terminal is a pty it was given), `detached` (the jail
// outlives the process that started it) and `log` (vmm-jail's messages in a file too). The jailed
// program is node itself, with its runtime bound in, reporting what it sees. Needs root (the
// namespaces and mounts) and a built vmm-jail; skips with the reason otherwise.
import { spawn, spawnSync } from 'node:child_process'
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { openPty } from '../src/index.js'
import { jailEnv, jailHelperPath, nodeRuntime, planText } from '../src/jail/index.js'

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (namespaces, mounts)'
  try {
    jailHelperPath()
  } catch (e) {
    return (e as Error).message
  }
  return undefined
}
const reason = unavailable()
if (reason) console.warn(`[host jail fd test skipped] ${reason}`)

const work = mkdtempSync(join(tmpdir(), 'vmm-jail-fds-'))
let n = 0

/** A jail holding node, running `script` (node -e) with `extra` plan records; its root and dir. */
function plan(script: string, extra: string[]): { text: string; dir: string } {
  const dir = join(work, `j${n++}`)
  mkdirSync(join(dir, 'root'), { recursive: true })
  const text = planText({
    root: join(dir, 'root'),
    uid: 0x7ff00000 + n,
    gid: 0x7ff00000 + n,
    hostname: 'fds',
    binds: nodeRuntime([]),
    links: [],
    devices: [],
    cgroupDirs: [],
    rlimits: [],
    cwd: '/',
    env: jailEnv({}),
    exec: [process.execPath, process.execPath, '-e', script],
  })
  return { text: `${extra.join('\n')}\n${text}`, dir }
}

/** What the jailed node reports on its fd `fd`: its fds, session, tty and pid. */
const REPORT = (fd: number) =>
  [
    "const fs = require('node:fs')",
    "const stat = fs.readFileSync('/proc/self/stat', 'utf8')",
    "const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')",
    "const fds = fs.readdirSync('/proc/self/fd').map(Number).filter((x) => x > 2).sort((a, b) => a - b)",
    "const links = fds.map((x) => { try { return fs.readlinkSync('/proc/self/fd/' + x) } catch { return '' } })",
    `fs.writeSync(${fd}, JSON.stringify({ pid: process.pid, session: Number(f[3]), ttyNr: Number(f[4]), fds, links }) + '\\n')`,
  ].join('; ')

afterAll(() => rmSync(work, { recursive: true, force: true }))

describe.skipIf(reason !== undefined)('vmm-jail fd, ctty, detached and log records', () => {
  it('moves kept fds to where the plan puts them, closes the rest, and makes a given pty the controlling terminal', async () => {
    const pty = openPty(true)
    const { text } = plan(REPORT(3), ['fd\t4\t3', 'fd\t5\t4', 'ctty\t4'])
    // fd 6: a file the plan does not keep, which must not reach the VMM.
    const marker = openSync(join(work, 'not-kept-marker'), 'w')
    const child = spawn(jailHelperPath(), [], {
      stdio: ['ignore', 'inherit', 'pipe', 'pipe', 'pipe', pty.slave, marker],
    })
    closeSync(pty.slave)
    closeSync(marker)
    let err = ''
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()))
    ;(child.stdio[3] as NodeJS.WritableStream).end(text)
    let out = ''
    ;(child.stdio[4] as NodeJS.ReadableStream).on('data', (b: Buffer) => (out += b.toString()))
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)))
    closeSync(pty.master) // open until here: a pty whose master is closed is hung up
    expect(err).toBe('')
    expect(code).toBe(0)
    const report = JSON.parse(out) as {
      pid: number
      session: number
      ttyNr: number
      fds: number[]
      links: string[]
    }
    // pid 2 of the jail's pid namespace (the init is 1), leading a session of its own, with a
    // controlling terminal; fd 6 (not in the plan) and the plan's fd 3 are closed; fds 3 and 4
    // are the kept ones (node may add its own above them, as epoll and eventfds).
    expect(report.pid).toBe(2)
    expect(report.session).toBe(2)
    expect(report.ttyNr).not.toBe(0)
    expect(report.fds.slice(0, 2)).toEqual([3, 4])
    expect(report.links.filter((l) => l.includes('not-kept-marker'))).toEqual([])
    expect(report.links[1]).toMatch(/^\/dev\/pts\/\d+$|^\/\d+$/)
  })

  it('refuses bad fd records, naming them, in stderr and in the log', () => {
    const { text, dir } = plan('0', ['fd\t3\t5', `log\t${join(work, 'refused.log')}`])
    const planFile = join(dir, 'plan')
    writeFileSync(planFile, text)
    const bad = spawnSync('sh', ['-c', `"$0" 3<"$1"`, jailHelperPath(), planFile], { encoding: 'utf8' })
    expect(bad.status).toBe(1)
    expect(bad.stderr).toMatch(/vmm-jail: plan: fd 3 is the plan itself/)
    expect(readFileSync(join(work, 'refused.log'), 'utf8')).toMatch(/vmm-jail: plan: fd 3 is the plan itself/)
    const twice = plan('0', ['fd\t4\t5', 'fd\t6\t5'])
    writeFileSync(planFile, twice.text)
    const dup = spawnSync('sh', ['-c', `"$0" 3<"$1" 4</dev/null 6</dev/null`, jailHelperPath(), planFile], {
      encoding: 'utf8',
    })
    expect(dup.stderr).toMatch(/two fd records for the VMM's fd 5/)
    // A step after the fds are kept (a bind of a source that is not there) is logged too.
    const late = plan('0', [
      `log\t${join(work, 'late.log')}`,
      `bind\t${join(work, 'no-such-source')}\t/x\tro`,
    ])
    writeFileSync(planFile, late.text)
    const bind = spawnSync('sh', ['-c', `"$0" 3<"$1"`, jailHelperPath(), planFile], { encoding: 'utf8' })
    expect(bind.stderr).toMatch(/vmm-jail: bind: stat .*no-such-source/)
    expect(readFileSync(join(work, 'late.log'), 'utf8')).toMatch(/vmm-jail: bind: stat .*no-such-source/)
    const closed = plan('0', ['fd\t7\t4'])
    writeFileSync(planFile, closed.text)
    const missing = spawnSync('sh', ['-c', `"$0" 3<"$1"`, jailHelperPath(), planFile], { encoding: 'utf8' })
    expect(missing.stderr).toMatch(/keep the inherited fd 7 \(is it open\?\)/)
  })

  it('detached: the jail goes on after the process that started it has exited', async () => {
    const out = join(work, 'detached.out')
    // The VMM writes its report a second after its start, by when the shell that started the
    // helper is long gone (without `detached`, PR_SET_PDEATHSIG would have killed the jail).
    const { text, dir } = plan(`setTimeout(() => { ${REPORT(3)} }, 1000)`, ['fd\t4\t3', 'detached'])
    const planFile = join(dir, 'plan')
    writeFileSync(planFile, text)
    const sh = spawnSync('sh', ['-c', `"$0" 3<"$1" 4>"$2" 2>/dev/null &`, jailHelperPath(), planFile, out])
    expect(sh.status).toBe(0)
    let report = ''
    for (let i = 0; i < 300 && !report.includes('\n'); i++) {
      await new Promise((r) => setTimeout(r, 100))
      report = existsSync(out) ? readFileSync(out, 'utf8') : ''
    }
    expect(JSON.parse(report).pid).toBe(2)
  })
})

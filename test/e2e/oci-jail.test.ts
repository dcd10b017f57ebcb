// The OCI runtime's sandbox in its jail (issue 17; packages/oci/src/sandbox-jail.ts), driven as
// containerd's shim drives the runtime (create with a pid file, start, state, delete) on a bundle
// of busybox. As root the sandbox is jailed by default:
//   - the pid in the pid file is vmm-jail's supervisor; the sandbox is pid 2 of a pid namespace of
//     its own, in a mount namespace of its own whose root holds no host file it was not given
//     (no /etc/shadow), with no_new_privs and seccomp on;
//   - with a writable rootfs it is root with only the 9p server's capabilities (CHOWN,
//     DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID, MKNOD), with a read-only one only
//     DAC_READ_SEARCH, and the guest still reads the image's root-only file;
//   - the container runs, its output reaches the caller's stdout, and delete removes the jail's
//     directory with the state;
//   - with no share (VMM_OCI_NO_9P=1, the rootfs copied into the initrd) it drops to a uid of its
//     own, without capabilities, and still writes its state and sockets (idmapped directories);
//   - --no-jail: the sandbox is the pid file's process, in the host's namespaces.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Kvm } from '@vmm/kvm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTemplate, busyboxRootfs } from './docker-daemon.mjs'

const reason = Kvm.unavailableReason() ?? (process.getuid?.() !== 0 ? 'the jail needs root' : undefined)
if (reason) console.warn(`[oci jail end-to-end test skipped] ${reason}`)

const LIMIT = 10 * 60_000
const log = (text: string) => console.log(`[e2e oci jail] ${text}`)
const ociMain = join(import.meta.dirname, '../../packages/oci/dist/main.js')
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** capabilities(7) numbers, as /proc/<pid>/status masks. */
const mask = (...caps: number[]) => caps.reduce((m, c) => m | (1n << BigInt(c)), 0n)
const SHARE_CAPS = mask(0, 1, 2, 3, 4, 27)
const READ_CAPS = mask(2)

function status(pid: number): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = line.indexOf(':')
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim()
  }
  return out
}

describe.skipIf(reason !== undefined)('the OCI sandbox in its jail', () => {
  let work: string
  let root: string
  let rootfs: string

  beforeAll(async () => {
    log(`container template: ${buildTemplate()}`)
    work = mkdtempSync(join(tmpdir(), 'vmm-oci-jail-'))
    root = join(work, 'state')
    rootfs = join(work, 'rootfs')
    busyboxRootfs(rootfs, work)
    writeFileSync(join(rootfs, 'root-only'), 'a secret of the image\n')
    chmodSync(join(rootfs, 'root-only'), 0o600)
  }, LIMIT)
  // A case that failed half-way leaves no sandbox running (a jailed one outlives its create).
  const made: string[] = []
  afterAll(() => {
    for (const id of made)
      spawnSync(process.execPath, [ociMain, '--root', root, 'delete', '--force', id], { stdio: 'ignore' })
    if (work) rmSync(work, { recursive: true, force: true })
  })

  const runtime = (args: string[], fds: { out?: number; err?: number } = {}, env = process.env) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [ociMain, '--root', root, ...args], {
        stdio: ['ignore', fds.out ?? 'ignore', fds.err ?? 'pipe'],
        env,
      })
      let stderr = ''
      child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()))
      child.on('exit', (code) => resolve({ code, stderr }))
    })

  /** A bundle running `script` in busybox's sh, its rootfs writable or not. */
  function bundle(name: string, script: string, readonly: boolean): string {
    const dir = join(work, name)
    mkdirSync(dir)
    const config = {
      ociVersion: '1.0.2',
      process: {
        terminal: false,
        user: { uid: 0, gid: 0 },
        args: ['sh', '-c', script],
        env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'],
        cwd: '/',
      },
      root: { path: rootfs, readonly },
      hostname: name,
    }
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config))
    return dir
  }

  /** create, check the sandbox with `inspect`, start, wait for the end, delete; the container's stdout. */
  async function run(
    id: string,
    dir: string,
    flags: string[],
    inspect: (supervisor: number, pids: number[]) => void,
    env = process.env,
  ): Promise<string> {
    made.push(id)
    const pidFile = join(work, `${id}.pid`)
    const outFile = join(work, `${id}.out`)
    const out = openSync(outFile, 'w')
    const created = await runtime(
      [...flags, 'create', '--bundle', dir, '--pid-file', pidFile, id],
      {
        out,
        err: out,
      },
      env,
    )
    closeSync(out)
    expect(created.code, `create: ${created.stderr}${readFileSync(outFile, 'utf8')}`).toBe(0)
    const supervisor = Number(readFileSync(pidFile, 'utf8'))
    const ps = execFileSync(process.execPath, [ociMain, '--root', root, 'ps', '--format', 'json', id], {
      encoding: 'utf8',
    })
    inspect(supervisor, JSON.parse(ps) as number[])
    expect((await runtime(['start', id])).code).toBe(0)
    for (let i = 0; i < 600; i++) {
      const state = JSON.parse(
        execFileSync(process.execPath, [ociMain, '--root', root, 'state', id], { encoding: 'utf8' }),
      ) as { status: string }
      if (state.status === 'stopped') break
      await sleep(100)
    }
    const deleted = await runtime(['delete', id])
    expect(deleted.code, deleted.stderr).toBe(0)
    return readFileSync(outFile, 'utf8')
  }

  /** The jailed sandbox among the container's pids: pid 2 of its pid namespace. */
  function jailedSandbox(pids: number[]): number {
    const found = pids.find((p) => /\s2$/.test(status(p).NSpid ?? ''))
    expect(found, `no pid 2 of a namespace among ${pids.join(' ')}`).toBeDefined()
    return found!
  }

  it('jailed by default: its own namespaces and root, root with only the share capabilities, seccomp', {
    timeout: LIMIT,
  }, async () => {
    const output = await run(
      'jail-rw',
      bundle('rw', 'echo hello from the jail; echo written > /tmp/w', false),
      [],
      (supervisor, pids) => {
        expect(readlinkSync(`/proc/${supervisor}/exe`)).toMatch(/\/vmm-jail$/)
        expect(pids[0]).toBe(supervisor)
        const sandbox = jailedSandbox(pids)
        const s = status(sandbox)
        log(`sandbox ${sandbox}: Uid ${s.Uid} CapEff ${s.CapEff} CapBnd ${s.CapBnd} Seccomp ${s.Seccomp}`)
        expect(s.Uid!.split(/\s+/)).toEqual(['0', '0', '0', '0'])
        expect(BigInt(`0x${s.CapEff}`)).toBe(SHARE_CAPS)
        expect(BigInt(`0x${s.CapBnd}`)).toBe(SHARE_CAPS)
        expect(s.NoNewPrivs).toBe('1')
        expect(s.Seccomp).toBe('2')
        for (const ns of ['mnt', 'pid', 'ipc', 'uts'])
          expect(readlinkSync(`/proc/${sandbox}/ns/${ns}`)).not.toBe(readlinkSync(`/proc/self/ns/${ns}`))
        // Its root: what the plan bound in, nothing of the host's /etc.
        expect(existsSync(`/proc/${sandbox}/root/etc/shadow`)).toBe(false)
        expect(existsSync(`/proc/${sandbox}/root${rootfs}/root-only`)).toBe(true)
      },
    )
    expect(output).toContain('hello from the jail')
    // The writable share works from the jail: the container's file is on the host.
    expect(readFileSync(join(rootfs, 'tmp/w'), 'utf8')).toBe('written\n')
  })

  it('a read-only rootfs: only DAC_READ_SEARCH, and the guest reads the root-only file', {
    timeout: LIMIT,
  }, async () => {
    const before = new Set(readdirSync('/run/vmm-jail'))
    let made: string[] = []
    const output = await run('jail-ro', bundle('ro', 'cat /root-only', true), [], (_supervisor, pids) => {
      const s = status(jailedSandbox(pids))
      expect(BigInt(`0x${s.CapEff}`)).toBe(READ_CAPS)
      expect(BigInt(`0x${s.CapPrm}`)).toBe(READ_CAPS)
      made = readdirSync('/run/vmm-jail').filter((d) => !before.has(d))
      expect(made).toHaveLength(1)
      expect(made[0]).toMatch(/^oci-\d+$/)
    })
    expect(output).toContain('a secret of the image')
    // delete removed the jail's directory.
    expect(existsSync(join('/run/vmm-jail', made[0]!))).toBe(false)
  })

  it('no share (the rootfs copied into the initrd): the sandbox drops to a uid of its own', {
    timeout: LIMIT,
  }, async () => {
    const env = { ...process.env, VMM_OCI_NO_9P: '1' }
    const output = await run(
      'noshare',
      bundle('noshare', 'echo no share', true),
      [],
      (_supervisor, pids) => {
        const s = status(jailedSandbox(pids))
        log(`sandbox without shares: Uid ${s.Uid} CapEff ${s.CapEff}`)
        const uid = Number(s.Uid!.split(/\s+/)[0])
        expect(uid).toBeGreaterThanOrEqual(0x71000000)
        expect(s.Uid!.split(/\s+/)).toEqual([String(uid), String(uid), String(uid), String(uid)])
        expect(BigInt(`0x${s.CapEff}`)).toBe(0n)
        expect(BigInt(`0x${s.CapPrm}`)).toBe(0n)
        expect(s.Groups).toBe('')
        expect(s.Seccomp).toBe('2')
      },
      env,
    )
    // It wrote its console log, status and sockets after the drop (idmapped directories).
    expect(output).toContain('no share')
  })

  it('--no-jail: the sandbox is the pid file process, in the host namespaces', {
    timeout: LIMIT,
  }, async () => {
    const output = await run(
      'nojail',
      bundle('nojail', 'echo unjailed', false),
      ['--no-jail'],
      (supervisor, pids) => {
        expect(pids).toEqual([supervisor])
        expect(readlinkSync(`/proc/${supervisor}/exe`)).toBe(readlinkSync('/proc/self/exe'))
        expect(readlinkSync(`/proc/${supervisor}/ns/mnt`)).toBe(readlinkSync('/proc/self/ns/mnt'))
        expect(status(supervisor).Seccomp).toBe('2')
      },
    )
    expect(output).toContain('unjailed')
  })
})

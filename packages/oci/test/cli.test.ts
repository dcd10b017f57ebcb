// The vmm-oci command as containerd's shim calls it (a new process per call), without /dev/kvm:
// bad bundles are refused before anything is made, naming the field, with runc's wording, a JSON
// line in the --log file and exit status 1, and nothing left under --root; the lifecycle rules
// (state, start twice, kill, delete of a running container without --force, ps) are checked on
// a container whose sandbox is stood in for by a real `sleep` process.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type ContainerState, procStat, STATUS_FILE, saveState } from '../src/state.js'

const MAIN = join(import.meta.dirname, '..', 'dist', 'main.js')

let dir: string
let root: string
let bundle: string
let logFile: string

function oci(...args: string[]) {
  const r = spawnSync(
    process.execPath,
    [MAIN, '--root', root, '--log', logFile, '--log-format', 'json', ...args],
    {
      encoding: 'utf8',
      cwd: bundle,
    },
  )
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

function lastLogLine(): { level: string; msg: string; time: string } {
  const lines = readFileSync(logFile, 'utf8').trim().split('\n')
  return JSON.parse(lines.at(-1)!)
}

function config(overrides: Record<string, unknown> = {}) {
  return {
    ociVersion: '1.0.2',
    root: { path: 'rootfs' },
    process: { args: ['sh'], cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 } },
    ...overrides,
  }
}

function expectRefused(args: string[], message: string | RegExp) {
  const r = oci(...args)
  expect(r.code).toBe(1)
  const line = lastLogLine()
  expect(line.level).toBe('error')
  if (typeof message === 'string') expect(line.msg).toContain(message)
  else expect(line.msg).toMatch(message)
  expect(Number.isNaN(Date.parse(line.time))).toBe(false)
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vmm-oci-test-'))
  root = join(dir, 'state')
  bundle = join(dir, 'bundle')
  mkdirSync(join(bundle, 'rootfs'), { recursive: true })
  logFile = join(bundle, 'log.json')
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

describe('vmm-oci: global flags and informational commands', () => {
  it('prints its version and features', () => {
    expect(oci('--version').stdout).toMatch(/^vmm-oci version \d+\.\d+\.\d+\n/)
    const f = JSON.parse(oci('features').stdout)
    expect(f.hooks).toContain('prestart')
    expect(f.ociVersionMin).toBe('1.0.0')
  })

  it('accepts --systemd-cgroup and --debug, refuses an unknown flag and command', () => {
    expect(oci('--systemd-cgroup', '--debug', 'features').code).toBe(0)
    expect(oci('--bogus', 'features').code).toBe(2)
    expect(lastLogLine().msg).toContain('flag provided but not defined: -bogus')
    expect(oci('frobnicate', 'x').code).toBe(2)
    expect(lastLogLine().msg).toBe('no such command: frobnicate')
  })
})

describe('vmm-oci create: the bundle is checked before anything is made', () => {
  const create = (id = 'c1') => ['create', '--bundle', bundle, '--pid-file', join(bundle, 'init.pid'), id]
  afterEach(() => {
    // Nothing left behind: no state directory, no pid file.
    expect(existsSync(root) ? readdirSync(root) : []).toEqual([])
    expect(existsSync(join(bundle, 'init.pid'))).toBe(false)
  })

  it('a missing config.json', () =>
    expectRefused(create(), `JSON specification file config.json not found in ${bundle}`))

  it('malformed JSON', () => {
    writeFileSync(join(bundle, 'config.json'), '{"ociVersion": ')
    expectRefused(create(), /^config\.json: malformed JSON: /)
  })

  it('a rootfs that does not exist', () => {
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(config({ root: { path: 'nope' } })))
    expectRefused(create(), `rootfs ("${join(bundle, 'nope')}") does not exist`)
  })

  it.each([
    [{ process: { args: [], cwd: '/' } }, 'config.json: process.args must be a non-empty array of strings'],
    [
      { process: { args: ['sh'], cwd: 'tmp' } },
      'config.json: process.cwd must be an absolute path, not "tmp"',
    ],
    [
      { process: { args: ['sh'], cwd: '/', user: { uid: -1, gid: 0 } } },
      'process.user.uid must be a non-negative integer',
    ],
    [
      { process: { args: ['sh'], cwd: '/', rlimits: [{ type: 'RLIMIT_BOGUS', soft: 1, hard: 1 }] } },
      'process.rlimits[0].type must be one of',
    ],
    [{ ociVersion: 1 }, 'config.json: ociVersion is required (a string)'],
    [{ mounts: [{ destination: 'relative' }] }, 'mounts[0].destination must be an absolute path'],
    [{ hooks: { prestrat: [] } }, 'hooks.prestrat is not a hook'],
    [{ hooks: { prestart: [{ path: 'rel' }] } }, 'hooks.prestart[0].path must be an absolute path'],
    [{ windows: {} }, 'config.json: windows is not supported by this runtime'],
    [{ linux: { devices: [{ path: '/dev/fuse' }] } }, 'config.json: linux.devices is not supported'],
    [
      { linux: { uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }] } },
      'linux.uidMappings is not supported',
    ],
    [
      { linux: { namespaces: [{ type: 'pid', path: '/proc/1/ns/pid' }] } },
      'joins the PID namespace /proc/1/ns/pid: a process in a microVM cannot join a host PID namespace',
    ],
    [
      { linux: { namespaces: [{ type: 'network', path: '/var/run/netns/vmm-oci-absent' }] } },
      /^network namespace \/var\/run\/netns\/vmm-oci-absent: ip -j addr show: nsenter: .*No such file or directory$/,
    ],
  ])('an unsupported or malformed field: %j', (overrides, message) => {
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(config(overrides)))
    expectRefused(create(), message)
  })

  it('a terminal without --console-socket, and a console socket without a terminal (runc wording)', () => {
    writeFileSync(
      join(bundle, 'config.json'),
      JSON.stringify(config({ process: { args: ['sh'], cwd: '/', terminal: true } })),
    )
    expectRefused(create(), 'cannot allocate tty if runc will detach without setting console socket')
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(config()))
    expectRefused(
      ['create', '--bundle', bundle, '--console-socket', join(dir, 'c.sock'), 'c1'],
      'cannot use console socket if runc will not detach or allocate tty',
    )
  })

  it('an invalid id', () => {
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(config()))
    expectRefused(create('../escape'), 'invalid container id format: ../escape')
  })
})

describe('vmm-oci: the lifecycle of an existing container', () => {
  let sleeper: ReturnType<typeof spawn> | undefined
  afterEach(() => sleeper?.kill('SIGKILL'))

  /** A container in --root whose sandbox is a real process (a sleep), as create would leave it. */
  function fakeContainer(id: string, status: string): number {
    sleeper = spawn('sleep', ['600'], { stdio: 'ignore' })
    const pid = sleeper.pid!
    const cdir = join(root, id)
    mkdirSync(cdir, { recursive: true })
    const state: ContainerState = {
      ociVersion: '1.0.2',
      id,
      bundle,
      pid,
      pidStart: procStat(pid)!.start,
      created: new Date().toISOString(),
    }
    saveState(cdir, state)
    writeFileSync(join(cdir, STATUS_FILE), status)
    writeFileSync(
      join(cdir, 'sandbox.json'),
      JSON.stringify({ id, spec: config(), plan: { size: { vcpus: 1, memoryMiB: 256 } }, mountRecords: [] }),
    )
    return pid
  }

  const waitGone = async (pid: number) => {
    for (let i = 0; i < 200 && procStat(pid) && !procStat(pid)!.zombie; i++)
      await new Promise((r) => setTimeout(r, 10))
  }

  it('a container that does not exist', () => {
    expectRefused(['state', 'nope'], 'container "nope" does not exist')
    expectRefused(['start', 'nope'], 'container "nope" does not exist')
    expectRefused(['kill', 'nope', '9'], 'container "nope" does not exist')
    expectRefused(['delete', 'nope'], 'container "nope" does not exist')
    expect(oci('delete', '--force', 'nope').code).toBe(0)
  })

  it('state, ps, delete without --force refused while running, kill, then stopped and deleted', async () => {
    const pid = fakeContainer('c1', 'running')
    const s = JSON.parse(oci('state', 'c1').stdout)
    expect(s).toMatchObject({ ociVersion: '1.0.2', id: 'c1', status: 'running', pid, bundle })
    expect(JSON.parse(oci('ps', '--format', 'json', 'c1').stdout)).toEqual([pid])
    expectRefused(['start', 'c1'], 'cannot start an already running container')
    expectRefused(['delete', 'c1'], 'cannot delete container c1 that is not stopped: running')
    expect(existsSync(join(root, 'c1'))).toBe(true)
    expect(oci('kill', 'c1', 'TERM').code).toBe(0)
    await waitGone(pid)
    const stopped = JSON.parse(oci('state', 'c1').stdout)
    expect(stopped.status).toBe('stopped')
    expect(stopped.pid).toBe(0)
    expectRefused(['start', 'c1'], 'cannot start a container that has stopped')
    expectRefused(['kill', 'c1', '9'], 'container not running')
    expect(JSON.parse(oci('ps', '--format', 'json', 'c1').stdout)).toEqual([])
    expect(oci('delete', 'c1').code).toBe(0)
    expect(existsSync(join(root, 'c1'))).toBe(false)
  })

  it('delete --force of a running container kills its sandbox', async () => {
    const pid = fakeContainer('c2', 'running')
    expect(oci('delete', '--force', 'c2').code).toBe(0)
    await waitGone(pid)
    expect(procStat(pid) === undefined || procStat(pid)!.zombie).toBe(true)
    expect(existsSync(join(root, 'c2'))).toBe(false)
  })

  it('a second create with the same id is refused and leaves the first alone', () => {
    fakeContainer('c3', 'created')
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(config()))
    expectRefused(['create', '--bundle', bundle, 'c3'], 'container with id exists: c3')
    expect(JSON.parse(oci('state', 'c3').stdout).status).toBe('created')
  })

  it('kill takes signal numbers and names and refuses unknown ones', () => {
    fakeContainer('c4', 'running')
    expectRefused(['kill', 'c4', 'SIGBOGUS'], 'unknown signal "SIGBOGUS"')
    expectRefused(['kill', 'c4', '99'], 'invalid signal: 99')
    expect(oci('kill', 'c4', 'SIGCONT').code).toBe(0)
    expect(oci('kill', 'c4', '18').code).toBe(0)
  })

  it('update refuses to resize the VM and accepts what it has no use for', () => {
    fakeContainer('c5', 'running')
    const update = (json: string) =>
      spawnSync(
        process.execPath,
        [MAIN, '--root', root, '--log', logFile, '--log-format', 'json', 'update', '--resources', '-', 'c5'],
        {
          input: json,
          encoding: 'utf8',
        },
      )
    expect(update('{"pids": {"limit": 100}}').status).toBe(0)
    expect(update('{"memory": {"limit": 268435456}}').status).toBe(0)
    expect(update('{"memory": {"limit": 1073741824}}').status).toBe(1)
    expect(lastLogLine().msg).toContain('changing them to 1 vCPUs and 1024 MiB is not supported')
  })
})

// End to end with Docker from Debian as the client (issue 16): a dockerd of the test's own
// (docker-daemon.mjs) with `vmm` registered as a runtime, and `docker run --runtime vmm`
// containers whose processes run in microVMs of ours. Each container is a guest boot (about a
// minute on kvm_pvm hosts) or, with the runtime `vmm`, a restore of the pre-booted container
// template (built in beforeAll); `vmm-cold` boots. The cases share containers and run concurrently:
//  - run --rm: stdout, the guest kernel's release (not the host's), exit code 3; a command that
//    is not in the image refused with runc's message;
//  - run -i with stdin from a pipe through cat, -e and -w honoured (a cold boot);
//  - two containers restored from one template at once: each its own rootfs, different
//    /dev/urandom bytes and boot IDs, and the host's clock;
//  - run -t (under script(1) for a client terminal): tty names a /dev/pts path;
//  - run -d: exec (output, exit code), exec -t, top (the sandbox pid), diff (a file the container wrote
//    lands in root.path), pause/unpause, stop (SIGTERM reaches the trap: exit 42);
//  - run -d then kill: exit 137; stop of a PID 1 without a SIGTERM handler: 137 after the timeout,
//    as with runc (the process is PID 1 of its PID namespace: `echo $$` prints 1; exec joins it);
//  - containerd's own client: ctr run --runc-binary, the image imported from `docker save`;
//  - and after the containers are gone, no state directory, socket directory or sandbox left.
import { execFileSync, spawn } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { release, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Kvm } from '@vmm/kvm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defaultGuest } from './console.js'
import { buildTemplate, DOCKER, dockerMissing, IMAGE, startDocker } from './docker-daemon.mjs'

const skip = Kvm.unavailableReason() ?? dockerMissing()
if (skip) console.warn(`[docker end-to-end test skipped] ${skip}`)

const LIMIT = 20 * 60_000
const log = (text: string) => console.log(`[e2e docker] ${text}`)

interface Result {
  code: number | null
  stdout: string
  stderr: string
  ms: number
}

describe.skipIf(skip)('docker run --runtime vmm', () => {
  let d: Awaited<ReturnType<typeof startDocker>>
  let guestRelease: string
  const docker = (args: string[], input?: string, command = DOCKER): Promise<Result> =>
    new Promise((resolve) => {
      const t0 = Date.now()
      const child = spawn(command, args, {
        env: d.env,
        stdio: ['pipe', 'pipe', 'pipe'],
      })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
      child.stdin.end(input ?? '')
      child.on('close', (code) => {
        const r = { code, stdout, stderr, ms: Date.now() - t0 }
        log(`${command === DOCKER ? 'docker' : command} ${args.join(' ')} -> ${code} in ${r.ms} ms`)
        resolve(r)
      })
    })
  const ok = async (args: string[]) => {
    const r = await docker(args)
    expect(r.code, `docker ${args.join(' ')}: ${r.stderr}`).toBe(0)
    return r.stdout
  }
  const vmm = ['run', '--runtime', 'vmm', '--network', 'none']
  // A cold boot (the runtime's --no-template, as Docker's `vmm-cold` runtime passes it).
  const cold = ['run', '--runtime', 'vmm-cold', '--network', 'none']

  beforeAll(async () => {
    // The kernel's release, from its build configuration's header ("Linux/x86 6.1.192 Kernel Configuration").
    const config = readFileSync((await defaultGuest()).config, 'utf8')
    guestRelease = /Linux\/x86 (\S+) Kernel Configuration/.exec(config)![1]!
    log(`container template: ${buildTemplate()}`)
    d = await startDocker()
    log(`dockerd in ${d.dir}; guest kernel ${guestRelease}, host ${release()}`)
  }, 10 * 60_000)
  afterAll(async () => {
    await d?.stop()
  }, 2 * 60_000)

  /** What containers that are gone must not leave: state dirs, socket dirs, sandbox processes. */
  const leftovers = () => ({
    state: readdirSync(join(d.dir, 'exec', 'runtime-runc', 'moby')).filter((n) => !n.startsWith('.')),
    sockets: readdirSync(tmpdir()).filter((n) => n.startsWith('vmm-oci-') && !socketsBefore.has(n)),
    sandboxes: readdirSync('/proc')
      .filter((n) => /^\d+$/.test(n))
      .filter((n) => {
        try {
          // Docker's containers (64 hex digits), not those another test file runs meanwhile.
          return /^vmm-oci sandbox [0-9a-f]{64}/.test(readFileSync(`/proc/${n}/cmdline`, 'utf8'))
        } catch {
          return false
        }
      }),
  })
  const socketsBefore = new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('vmm-oci-')))

  it('runs, pipes stdin, gives a tty, and exits with the process status', { timeout: LIMIT }, async () => {
    const tty = (runtime: string) =>
      docker(
        // A 30x100 client terminal: its size reaches the container's pty (a resize after start).
        [
          '-qec',
          `stty rows 30 cols 100; ${DOCKER} run --runtime ${runtime} --network none --rm -t ${IMAGE} sh -c 'tty; sleep 2; stty size'`,
          '/dev/null',
        ],
        undefined,
        'script',
      )
    const [plain, piped, ours, runc, missing, pid1] = await Promise.all([
      docker([...vmm, '--rm', IMAGE, 'sh', '-c', 'echo hi; uname -r; exit 3']),
      docker(
        [...cold, '--rm', '-i', '-e', 'FOO=bar', '-w', '/tmp', IMAGE, 'sh', '-c', 'cat; echo "$FOO"; pwd'],
        'piped through\n',
      ),
      // The client needs a terminal of its own for -t: script(1) gives it one. runc's answer is
      // the reference for the bytes (the client's terminal adds its own CR to the guest's CR LF).
      tty('vmm'),
      tty('runc'),
      docker([...vmm, '--rm', IMAGE, 'nope']),
      // PID 1 of its own PID namespace, as under runc; its exit status is the container's even
      // with a child left running (the namespace's end takes the child).
      docker([...vmm, '--rm', IMAGE, 'sh', '-c', 'sleep 600 & echo $$; exit 5']),
    ])
    expect(plain.stderr).toBe('')
    expect(plain.stdout).toBe(`hi\n${guestRelease}\n`)
    expect(plain.code).toBe(3)
    expect(piped.stdout).toBe('piped through\nbar\n/tmp\n')
    expect(piped.code).toBe(0)
    expect(ours.stdout).toMatch(/^\/dev\/pts\/\d+\r*\n30 100\r*\n$/)
    expect(ours.stdout.replace(/\d+/, 'N')).toBe(runc.stdout.replace(/\d+/, 'N'))
    expect(ours.code).toBe(0)
    // A command that is not in the image: refused at create, in runc's words; 127 as with runc.
    expect(missing.stderr).toContain('exec: "nope": executable file not found in $PATH')
    expect(missing.code).toBe(127)
    expect(pid1.stdout).toBe('1\n')
    expect(pid1.code).toBe(5)
    expect(leftovers()).toEqual({ state: [], sockets: [], sandboxes: [] })
  })

  it('two containers restored from one template at once: their own rootfs, randomness and clock', {
    timeout: LIMIT,
  }, async () => {
    // Made first, each given a file of its own through Docker (which writes root.path), then
    // started together: both restore the same template while the other runs.
    const script =
      'cat /id; head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo; cat /proc/sys/kernel/random/boot_id; date +%s; sleep 1000'
    const ids: string[] = []
    for (const name of ['clone-a', 'clone-b']) {
      ids.push(
        (
          await ok([
            'create',
            '--runtime',
            'vmm',
            '--network',
            'none',
            '--name',
            name,
            IMAGE,
            'sh',
            '-c',
            script,
          ])
        ).trim(),
      )
      const file = join(d.dir, `${name}.id`)
      writeFileSync(file, `${name}\n`)
      await ok(['cp', file, `${name}:/id`])
    }
    const t0 = Math.floor(Date.now() / 1000)
    await Promise.all(['clone-a', 'clone-b'].map((n) => ok(['start', n])))
    const parse = async (name: string) => {
      let out = ''
      for (let i = 0; i < 600 && out.trim().split('\n').length < 4; i++) {
        await new Promise((r) => setTimeout(r, 200))
        out = await ok(['logs', name])
      }
      const [id, random, bootId, date] = out.trim().split('\n')
      return { id, random, bootId, date: Number(date) }
    }
    const [pa, pb] = [await parse('clone-a'), await parse('clone-b')]
    const t1 = Math.ceil(Date.now() / 1000)
    // Both restored the template (the sandbox says so in its log in the container's state dir).
    for (const id of ids)
      expect(readFileSync(join(d.dir, 'exec', 'runtime-runc', 'moby', id, 'sandbox.log'), 'utf8')).toContain(
        'VM restored from the template',
      )
    // Each sees its own rootfs, not the template's empty slot nor the other's.
    expect([pa.id, pb.id]).toEqual(['clone-a', 'clone-b'])
    // Different random bytes: the host's entropy, with RNDRESEEDCRNG. The boot ID, made from the
    // CRNG at its first read, differs too (without the reseed both clones would draw the same).
    expect(pa.random).toMatch(/^[0-9a-f]{64}$/)
    expect(pb.random).not.toBe(pa.random)
    expect(pa.bootId).toMatch(/^[0-9a-f-]{36}$/)
    expect(pb.bootId).not.toBe(pa.bootId)
    // The host's clock, not the template's moment.
    for (const p of [pa, pb])
      expect(p.date >= t0 - 2 && p.date <= t1 + 2, `guest clock ${p.date}, host ${t0}..${t1}`).toBe(true)
    await ok(['rm', '-f', ...ids])
    expect(leftovers()).toEqual({ state: [], sockets: [], sandboxes: [] })
  })

  it('containerd: ctr run --runc-binary against the same containerd', { timeout: LIMIT }, async () => {
    const ctr = (args: string[], input?: Buffer) =>
      execFileSync('ctr', ['--address', d.containerdSocket, ...args], { input, encoding: 'utf8' })
    ctr(['images', 'import', '-'], execFileSync(DOCKER, ['save', IMAGE], { env: d.env, maxBuffer: 64 << 20 }))
    const r = await docker(
      [
        '--address',
        d.containerdSocket,
        'run',
        '--rm',
        '--runc-binary',
        d.runtime,
        `docker.io/library/${IMAGE}`,
        'ctr1',
        'sh',
        '-c',
        'echo from ctr; uname -r; exit 4',
      ],
      undefined,
      'ctr',
    )
    expect(r.stdout).toBe(`from ctr\n${guestRelease}\n`)
    expect(r.code).toBe(4)
  })

  it('detached: exec, top, diff, pause/unpause, stop and kill', { timeout: LIMIT }, async () => {
    const script = 'trap "echo got TERM; exit 42" TERM; echo written > /tmp/marker; while :; do sleep 1; done'
    const [a, b, c, r] = await Promise.all([
      docker([...vmm, '-d', '--name', 'vmm-a', IMAGE, 'sh', '-c', script]),
      docker([...vmm, '-d', '--name', 'vmm-b', IMAGE, 'sleep', '1000']),
      docker([...vmm, '-d', '--name', 'vmm-c', IMAGE, 'sleep', '1000']),
      docker(['run', '--network', 'none', '-d', '--name', 'runc-c', IMAGE, 'sleep', '1000']),
    ])
    for (const x of [a, b, c, r]) expect(x.code, x.stderr).toBe(0)

    // `docker stop` of a PID 1 without a SIGTERM handler: SIGTERM does nothing, so the stop
    // takes its timeout and ends with SIGKILL (137), with our runtime as with runc.
    const [stopC, stopR] = await Promise.all([
      docker(['stop', '-t', '3', 'vmm-c']),
      docker(['stop', '-t', '3', 'runc-c']),
    ])
    for (const [name, stop] of [
      ['vmm-c', stopC],
      ['runc-c', stopR],
    ] as const) {
      expect(stop.code, stop.stderr).toBe(0)
      expect(stop.ms, name).toBeGreaterThanOrEqual(3000)
      expect((await ok(['inspect', '-f', '{{.State.ExitCode}}', name])).trim(), name).toBe('137')
    }

    const hostname = (await ok(['inspect', '-f', '{{.Config.Hostname}}', 'vmm-a'])).trim()
    const exec = await docker(['exec', 'vmm-a', 'sh', '-c', 'cat /tmp/marker; hostname; exit 5'])
    expect(exec.stdout).toBe(`written\n${hostname}\n`)
    expect(exec.code).toBe(5)

    // exec joins the container's PID namespace: its /proc shows the container's init as PID 1,
    // and its own status comes back although it leaves a child behind.
    const joined = await docker([
      'exec',
      'vmm-a',
      'sh',
      '-c',
      'head -c 2 /proc/1/cmdline; echo; echo $$; sleep 600 & exit 6',
    ])
    expect(joined.stdout).toMatch(/^sh\n(\d+)\n$/)
    expect(Number(joined.stdout.split('\n')[1])).toBeGreaterThan(1)
    expect(joined.code).toBe(6)

    // exec -t: its own pty in the guest (the master again over --console-socket).
    const execTty = await docker(['-qec', `${DOCKER} exec -t vmm-a tty`, '/dev/null'], undefined, 'script')
    expect(execTty.stdout).toMatch(/^\/dev\/pts\/\d+\r*\n$/)
    expect(execTty.code).toBe(0)

    const pid = (await ok(['inspect', '-f', '{{.State.Pid}}', 'vmm-a'])).trim()
    const top = await ok(['top', 'vmm-a'])
    expect(top).toContain('vmm-oci sandbox')
    expect(top.split('\n').some((l) => l.split(/\s+/)[1] === pid)).toBe(true)

    // The container's write reached root.path: Docker's own view of the upper layer shows it.
    expect((await ok(['diff', 'vmm-a'])).split('\n')).toContain('A /tmp/marker')

    await ok(['pause', 'vmm-a'])
    expect((await ok(['inspect', '-f', '{{.State.Status}}', 'vmm-a'])).trim()).toBe('paused')
    await ok(['unpause', 'vmm-a'])
    expect((await ok(['inspect', '-f', '{{.State.Status}}', 'vmm-a'])).trim()).toBe('running')

    await ok(['stop', '-t', '60', 'vmm-a'])
    expect((await ok(['inspect', '-f', '{{.State.ExitCode}}', 'vmm-a'])).trim()).toBe('42')
    expect(await ok(['logs', 'vmm-a'])).toContain('got TERM')

    await ok(['kill', 'vmm-b'])
    await ok(['wait', 'vmm-b'])
    expect((await ok(['inspect', '-f', '{{.State.ExitCode}}', 'vmm-b'])).trim()).toBe('137')
    await ok(['rm', 'vmm-a', 'vmm-b', 'vmm-c', 'runc-c'])
    expect(leftovers()).toEqual({ state: [], sockets: [], sandboxes: [] })
  })
})

// The agent's parsers in C (agent/net.c, agent/pidns.c), compiled with gcc as the container guest
// is, run on what the host side really sends: the network records network.ts makes, encoded as
// the 'C' message carries them, and mountinfo texts for the PID namespace's /proc. Skips without gcc.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AGENT_DIR } from '../src/create.js'
import { type NetPlan, netRecords } from '../src/network.js'
import { encodeRecords } from '../src/protocol.js'

const noGcc = spawnSync('gcc', ['--version']).status !== 0
if (noGcc) console.warn('[agent parser test skipped] gcc is not installed (scripts/setup.sh installs it)')

describe.skipIf(noGcc)('the agent parsers (C)', () => {
  let dir: string
  let harness: string
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vmm-agent-harness-'))
    const sources = readdirSync(AGENT_DIR)
      .filter((n) => n.endsWith('.c'))
      .map((n) => join(AGENT_DIR, n))
    // The agent's main renamed away, so the harness's main runs the same object code.
    execFileSync('gcc', ['-c', '-Wall', '-Werror', '-Dmain=vmm_agent_main', ...sources], {
      cwd: dir,
      stdio: 'pipe',
    })
    const objects = readdirSync(dir).filter((n) => n.endsWith('.o'))
    harness = join(dir, 'harness')
    execFileSync(
      'gcc',
      [
        '-Wall',
        '-Werror',
        '-o',
        harness,
        fileURLToPath(new URL('./agent-harness.c', import.meta.url)),
        ...objects,
      ],
      {
        cwd: dir,
        stdio: 'pipe',
      },
    )
  }, 120_000)
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  const run = (mode: string, input: Buffer | string) =>
    execFileSync(harness, [mode], { input, encoding: 'utf8' }).trim().split('\n')

  const plan: NetPlan = {
    netns: '/var/run/netns/x',
    veth: 'eth0',
    mac: '0a:58:0a:f4:01:07',
    mtu: 1450,
    addresses: [
      { address: '10.244.1.7', prefix: 24 },
      { address: '192.168.5.9', prefix: 32 },
      { address: 'fd00:10:244:1::7', prefix: 64 },
    ],
    routes: [
      { dest: '169.254.1.1', prefix: 32 },
      { dest: '0.0.0.0', prefix: 0, gateway: '169.254.1.1' },
      { dest: '10.96.0.0', prefix: 12, gateway: '10.244.1.1' },
      { dest: '::', prefix: 0, gateway: 'fe80::1' },
    ],
    tap: 'vmmtap0',
  }

  it("reads the network records of the 'C' message as network.ts writes them, among the others", () => {
    const records = encodeRecords([
      ['h', 'box'],
      ['M', ['root', 'rootfs', '/', '9p', '0', ''].join('\0')],
      ...netRecords(plan),
    ])
    expect(run('net', records)).toEqual([
      'link eth0 0a:58:0a:f4:01:07 1450',
      'addr 10.244.1.7/24',
      'addr 192.168.5.9/32',
      'addr fd00:10:244:1::7/64',
      'route 169.254.1.1/32 link',
      'route 0.0.0.0/0 169.254.1.1',
      'route 10.96.0.0/12 10.244.1.1',
      'route ::/0 fe80::1',
    ])
    // No network records: loopback only (setup_network brings lo up and stops).
    expect(run('net', encodeRecords([['h', 'box']]))).toEqual([''])
  })

  it.each([
    [['n', 'eth0 0a:58:0a:f4:01 1500'], 'network: malformed \'n\' record "eth0 0a:58:0a:f4:01 1500"'],
    [['n', 'eth0 0a:58:0a:f4:01:07 20'], "network: malformed 'n' record"],
    [['n', 'a-name-too-long-for-linux 0a:58:0a:f4:01:07 1500'], "network: malformed 'n' record"],
    [['i', '10.0.0.300/24'], 'network: malformed \'i\' record "10.0.0.300/24"'],
    [['i', '10.0.0.3/33'], "network: malformed 'i' record"],
    [['i', '10.0.0.3'], "network: malformed 'i' record"],
    [['i', 'fd00::7/129'], "network: malformed 'i' record"],
    [['r', '::/0 10.0.0.1'], 'network: malformed \'r\' record "::/0 10.0.0.1"'],
    [['r', '0.0.0.0/0 gateway'], 'network: malformed \'r\' record "0.0.0.0/0 gateway"'],
  ] as const)('refuses the record %j, naming it', (record, message) => {
    const out = run('net', encodeRecords([['n', 'eth0 0a:58:0a:f4:01:07 1500'], record]))
    expect(out[0]).toContain(`error ${message}`)
  })

  it('refuses addresses without an interface', () => {
    expect(run('net', encodeRecords([['i', '10.0.0.2/24']]))).toEqual([
      "error network: addresses or routes without an interface ('n' record)",
    ])
  })

  it('finds the proc mounts under /newroot in mountinfo, with their flags, escapes undone', () => {
    const info = [
      '22 1 0:21 / /proc rw,relatime - proc proc rw',
      '40 30 0:33 / /newroot rw,relatime - 9p rootfs rw,access=client',
      '41 40 0:34 / /newroot/proc rw,nosuid,nodev,noexec,relatime shared:7 master:1 - proc proc rw',
      '42 40 0:35 / /newroot/dev rw,nosuid - tmpfs tmpfs rw,mode=755',
      '43 40 0:36 / /newroot/my\\040proc ro,nosuid - proc proc rw',
      '44 1 0:37 / /newrootx/proc rw - proc proc rw',
    ].join('\n')
    // MS_RDONLY 1, MS_NOSUID 2, MS_NODEV 4, MS_NOEXEC 8, MS_RELATIME 1 << 21.
    expect(run('proc', info)).toEqual([`/newroot/proc ${2 | 4 | 8 | (1 << 21)}`, `/newroot/my proc ${1 | 2}`])
  })
})

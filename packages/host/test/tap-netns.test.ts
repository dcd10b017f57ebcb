// A TAP made inside another network namespace (Tap.openIn, netns.cc) and adopted from an inherited
// fd by another process (Tap.fromFd, TUNGETIFF), as vmm-oci's create and sandbox use them: on a
// named namespace this test makes, so no interface appears in the host's. Needs root (ip netns,
// setns); skips with the reason otherwise.
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, openSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Tap } from '../src/index.js'

const here = dirname(fileURLToPath(import.meta.url))

function unavailable(): string | undefined {
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun is missing'
  if (process.getuid?.() !== 0) return 'needs root (ip netns, setns)'
  const probe = spawnSync('ip', ['netns', 'list'], { stdio: 'pipe' })
  if (probe.status !== 0) return `ip netns is unavailable: ${probe.stderr?.toString().trim()}`
  return undefined
}
const reason = unavailable()
if (reason) console.warn(`[host tap-in-namespace test skipped] ${reason}`)

const ns = `vmm-host-tap-${randomBytes(3).toString('hex')}`
const inNs = (...argv: string[]) => spawnSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8' })

describe.skipIf(reason !== undefined)('a TAP made inside another network namespace', () => {
  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', ns])
    // The child adopts the fd with the compiled package: bring dist up to date.
    execFileSync('npx', ['tsc', '-b', join(here, '..')], { stdio: 'pipe' })
  }, 120_000)
  afterAll(() => {
    spawnSync('ip', ['netns', 'del', ns])
  })

  it('lives in that namespace only, for as long as an fd to it is open, in whichever process holds it', () => {
    const tap = Tap.openIn(`/run/netns/${ns}`, 'vmmns%d', { vnetHdr: true })
    expect(tap.name).toBe('vmmns0')
    expect(tap.vnetHdr).toBe(true)
    expect(inNs('ip', 'link', 'show', 'vmmns0').status).toBe(0)
    expect(spawnSync('ip', ['link', 'show', 'vmmns0'], { stdio: 'pipe' }).status).not.toBe(0)

    // Another process gets the fd (as the sandbox does, at fd 3 here) and adopts it: TUNGETIFF
    // tells it the name and the vnet header; the TAP outlives our copy while the child holds one.
    const child = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { Tap } from ${JSON.stringify(join(here, '../dist/index.js'))}
         const t = Tap.fromFd(3)
         process.stdout.write(JSON.stringify({ name: t.name, vnetHdr: t.vnetHdr }))`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe', tap.fd], encoding: 'utf8' },
    )
    expect(child.stderr).toBe('')
    expect(JSON.parse(child.stdout)).toEqual({ name: 'vmmns0', vnetHdr: true })
    tap.close()
    // Not persistent: with every fd closed the interface is gone.
    expect(inNs('ip', 'link', 'show', 'vmmns0').status).not.toBe(0)
  })

  it('names what is wrong: a namespace path that does not exist, a fd that is no attached TAP', () => {
    expect(() => Tap.openIn('/run/netns/vmm-none-such', 'x0')).toThrow(/open failed: ENOENT/)
    expect(() => Tap.openIn('/dev/null', 'x0')).toThrow(/setns failed: EINVAL/)
    const tun = openSync('/dev/net/tun', 'r+') // opened, never attached: TUNGETIFF answers EBADFD
    try {
      expect(() => Tap.fromFd(tun)).toThrow(/TUNGETIFF failed: EBADFD/)
    } finally {
      closeSync(tun)
    }
    const devNull = openSync('/dev/null', 'r')
    try {
      expect(() => Tap.fromFd(devNull)).toThrow(/TUNGETIFF failed: (ENOTTY|EINVAL)/)
    } finally {
      closeSync(devNull)
    }
  })
})

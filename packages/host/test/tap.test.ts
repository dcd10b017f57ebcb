// TAP devices, opened in a private network namespace this test creates (unshare -n) so no
// interface appears on the host. Needs root (or CAP_NET_ADMIN + user namespaces) and
// /dev/net/tun; it skips with the reason otherwise.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'

const here = dirname(fileURLToPath(import.meta.url))

function unavailable(): string | undefined {
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun is missing'
  const probe = spawnSync('unshare', ['-n', 'true'], { stdio: 'pipe' })
  if (probe.status !== 0)
    return `cannot create a network namespace (unshare -n): ${probe.stderr.toString().trim()}`
  return undefined
}
const reason = unavailable()
if (reason) console.warn(`[host tap test skipped] ${reason}`)

describe.skipIf(reason !== undefined)('Tap in a private network namespace', () => {
  beforeAll(() => {
    // The child runs the compiled package: bring dist up to date (incremental, quick when it is).
    execFileSync('npx', ['tsc', '-b', join(here, '..')], { stdio: 'pipe' })
  }, 120_000)

  it('opens a TAP with the kernel-chosen name, sets offloads, writes a frame (EIO while down), reads none, refuses a long name', () => {
    const child = spawnSync('unshare', ['-n', process.execPath, join(here, 'tap-ns-child.mjs')], {
      stdio: 'pipe',
      timeout: 20_000,
    })
    expect(child.stderr.toString()).toBe('')
    expect(child.status).toBe(0)
    expect(JSON.parse(child.stdout.toString())).toEqual({
      name: 'vmmtest0',
      vnetHdr: true,
      readWhenEmpty: -1,
      writeWhenDown: { code: 'EIO', syscall: 'writev' },
      written: 72,
      longName: 'RangeError',
    })
  })
})

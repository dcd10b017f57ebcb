// virtio-net on a real TAP, inside a network namespace this test creates (unshare -n): the child
// process (net-ns-child.mjs) pings the host side of the TAP from the fake driver. Needs root (or
// CAP_NET_ADMIN + user namespaces) and /dev/net/tun; it skips with the reason otherwise.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'

const here = dirname(fileURLToPath(import.meta.url))
const pkg = join(here, '..')

function unavailable(): string | undefined {
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun is missing'
  const probe = spawnSync('unshare', ['-n', 'true'], { stdio: 'pipe' })
  if (probe.status !== 0)
    return `cannot create a network namespace (unshare -n): ${probe.stderr.toString().trim()}`
  return undefined
}
const reason = unavailable()
if (reason) console.warn(`[virtio tap test skipped] ${reason}`)

describe.skipIf(reason !== undefined)('virtio-net on a TAP in a private network namespace', () => {
  beforeAll(() => {
    // The child runs the compiled package: bring dist up to date (incremental, quick when it is).
    execFileSync('npx', ['tsc', '-b', pkg], { stdio: 'pipe' })
  }, 120_000)

  it('answers the guest ping from the host kernel through the TAP', () => {
    const child = spawnSync(
      'unshare',
      ['-n', process.execPath, join(here, 'net-ns-child.mjs'), join(pkg, 'dist')],
      {
        stdio: 'pipe',
        timeout: 20_000,
      },
    )
    expect(child.stderr.toString()).toBe('')
    expect(child.status).toBe(0)
    const result = JSON.parse(child.stdout.toString())
    expect(result.reply.numBuffers).toBe(1)
    expect(result.reply.payload).toEqual(Array.from({ length: 32 }, (_, i) => i))
    expect(result.counters.txFrames).toBe(1)
    expect(result.counters.rxFrames).toBeGreaterThanOrEqual(1)
  })
})

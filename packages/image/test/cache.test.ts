// Cache location, key stability, the build lock, and the all-or-nothing cache entry.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { acquireLock, cacheRoot, contentKey, lockHolder } from '../src/cache.js'
import { ensureEntry, type GuestInputs, guestKeys } from '../src/guest.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'vmm-cache-'))
  dirs.push(d)
  return d
}

/** The pid of a process that has exited (so a lock naming it is stale). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
    encoding: 'utf8',
  })
  return Number(r.stdout)
}

describe('cacheRoot', () => {
  it('is VMM_CACHE_DIR, else XDG_CACHE_HOME/vmm, else ~/.cache/vmm', () => {
    expect(cacheRoot({ VMM_CACHE_DIR: '/c', XDG_CACHE_HOME: '/x' })).toBe('/c')
    expect(cacheRoot({ XDG_CACHE_HOME: '/x' })).toBe('/x/vmm')
    expect(cacheRoot({ HOME: '/h' })).toMatch(/\/\.cache\/vmm$/)
  })
})

describe('cache keys', () => {
  const inputs: GuestInputs = {
    fragment: 'CONFIG_A=y\n',
    patches: [],
    init: '#!/bin/sh\n',
    inittab: '::respawn:/bin/sh\n',
    linuxSourceVersion: '6.1.192-2',
    installedTarball: '/usr/src/linux-source-6.1.tar.xz',
    busyboxVersion: '1:1.35.0-4+deb12u1+b1',
  }

  it('are stable across runs and releases of this code (bump BUILDER_VERSION to change them)', () => {
    // Fixed values: a change here means every cache entry in CI and on laptops is rebuilt.
    expect(guestKeys(inputs)).toEqual({
      kernelKey: KERNEL_KEY,
      initramfsKey: INITRAMFS_KEY,
      cacheKey: CACHE_KEY,
    })
  })

  it('do not depend on object key order, and separate the parts unambiguously', () => {
    expect(contentKey({ a: '1', b: '2' })).toBe(contentKey({ b: '2', a: '1' }))
    expect(contentKey({ a: 'xy', b: '' })).not.toBe(contentKey({ a: 'x', b: 'y' }))
  })

  it('the kernel key follows the fragment, patches and source version only; the initramfs key init, inittab and busybox only', () => {
    const k = guestKeys(inputs)
    const changed = (patch: Partial<GuestInputs>) => guestKeys({ ...inputs, ...patch })
    expect(changed({ init: 'x' }).kernelKey).toBe(k.kernelKey)
    expect(changed({ inittab: 'x' }).kernelKey).toBe(k.kernelKey)
    expect(changed({ busyboxVersion: 'x' }).kernelKey).toBe(k.kernelKey)
    expect(changed({ fragment: 'x' }).initramfsKey).toBe(k.initramfsKey)
    expect(changed({ linuxSourceVersion: 'x' }).initramfsKey).toBe(k.initramfsKey)
    const patched = changed({ patches: [{ name: '0001-a.patch', text: 'x' }] })
    expect(patched.initramfsKey).toBe(k.initramfsKey)
    expect(patched.kernelKey).not.toBe(k.kernelKey)
    // A patch's content and its place in the order both count.
    expect(changed({ patches: [{ name: '0001-a.patch', text: 'y' }] }).kernelKey).not.toBe(patched.kernelKey)
    // Where the tarball comes from (installed or downloaded) is not part of what gets built.
    expect(changed({ installedTarball: undefined })).toEqual(k)
    for (const patch of [
      { fragment: 'x' },
      { linuxSourceVersion: 'x' },
      { init: 'x' },
      { inittab: 'x' },
      { busyboxVersion: 'x' },
    ])
      expect(changed(patch).cacheKey).not.toBe(k.cacheKey)
  })
})

describe('acquireLock', () => {
  it('makes a second taker wait until the first releases', async () => {
    const lock = join(tmp(), 'k.lock')
    const release = await acquireLock(lock)
    const waits: number[] = []
    let second = false
    const p = acquireLock(lock, (h) => waits.push(h.pid), 10).then((r) => {
      second = true
      return r
    })
    await sleep(100)
    expect(second).toBe(false)
    expect(waits).toEqual([process.pid])
    expect(lockHolder(lock)).toEqual({ pid: process.pid, host: hostname() })
    release()
    ;(await p)()
    expect(second).toBe(true)
    expect(existsSync(lock)).toBe(false)
  })

  it('breaks a lock whose holder died, and only one of several waiters gets it', async () => {
    const dir = tmp()
    const lock = join(dir, 'k.lock')
    writeFileSync(lock, `${deadPid()}\n${hostname()}\n`)
    expect(lockHolder(lock)).toBeUndefined()
    let holders = 0
    let maxHolders = 0
    await Promise.all(
      [1, 2, 3].map(async () => {
        const release = await acquireLock(lock, () => {}, 5)
        holders++
        maxHolders = Math.max(maxHolders, holders)
        await sleep(30)
        holders--
        release()
      }),
    )
    expect(maxHolders).toBe(1)
    expect(readdirSync(dir)).toEqual([])
  })

  it('never breaks a lock held on another host (its pid means nothing here)', async () => {
    const lock = join(tmp(), 'k.lock')
    writeFileSync(lock, `${deadPid()}\nsome-other-host\n`)
    let got = false
    const p = acquireLock(lock, () => {}, 5).then((release) => {
      got = true
      return release
    })
    await sleep(100)
    expect(got).toBe(false)
    expect(readFileSync(lock, 'utf8')).toContain('some-other-host')
    rmSync(lock)
    ;(await p)()
  })
})

describe('ensureEntry', () => {
  it('a failed build leaves no entry, no temporary directory and no lock', async () => {
    const parent = join(tmp(), 'kernel')
    const dir = join(parent, 'key1')
    await expect(
      ensureEntry(
        dir,
        () => {},
        async (t) => {
          writeFileSync(join(t, 'vmlinux'), 'half')
          throw new Error('make failed')
        },
      ),
    ).rejects.toThrow('make failed')
    expect(readdirSync(parent)).toEqual([])
  })

  it('removes the temporaries of a killed build, then builds once; concurrent callers share it', async () => {
    const parent = join(tmp(), 'kernel')
    const dir = join(parent, 'key1')
    mkdirSync(join(parent, `.tmp-key1-${deadPid()}`), { recursive: true })
    let fills = 0
    const fill = async (t: string) => {
      fills++
      await sleep(50)
      writeFileSync(join(t, 'vmlinux'), 'whole')
    }
    const built = await Promise.all([ensureEntry(dir, () => {}, fill), ensureEntry(dir, () => {}, fill)])
    expect(fills).toBe(1)
    expect(built.sort()).toEqual([false, true])
    expect(readFileSync(join(dir, 'vmlinux'), 'utf8')).toBe('whole')
    expect(readdirSync(parent)).toEqual(['key1'])
    expect(await ensureEntry(dir, () => {}, fill)).toBe(false)
  })
})

// guestKeys() of the inputs above with BUILDER_VERSION '1'.
const KERNEL_KEY = '18d5ce8027ad2c6b149b'
const INITRAMFS_KEY = 'da533d5be5f7c8f0c1e4'
const CACHE_KEY = 'e04bd04c77131c982a63'

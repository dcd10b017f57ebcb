// The kernel build's error paths, on a fake linux-source tarball whose Makefile and
// merge_config.sh are small shell scripts: a failing make, and options kconfig dropped.
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { INSTALLED_LINUX_TARBALL, kernelPatchPaths } from '../src/guest.js'
import { MissingHostPackagesError, requireFreeSpace, requireHost } from '../src/host.js'
import { buildKernel, KernelBuildError } from '../src/kernel.js'
import type { ProgressEvent } from '../src/progress.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'vmm-kernel-'))
  dirs.push(d)
  return d
}

/** A linux-source-6.1.tar.xz whose Makefile has the given recipe lines per target. */
function fakeSource(recipes: Record<string, string>, mergeConfig: string): string {
  const root = tmp()
  const src = join(root, 'linux-source-6.1')
  mkdirSync(join(src, 'scripts/kconfig'), { recursive: true })
  const makefile = Object.entries(recipes)
    .map(
      ([target, recipe]) =>
        `${target}:\n${recipe
          .split('\n')
          .map((l) => `\t${l}\n`)
          .join('')}`,
    )
    .join('\n')
  writeFileSync(join(src, 'Makefile'), `.PHONY: ${Object.keys(recipes).join(' ')}\n${makefile}`)
  writeFileSync(join(src, 'scripts/kconfig/merge_config.sh'), `#!/bin/sh\n${mergeConfig}\n`)
  chmodSync(join(src, 'scripts/kconfig/merge_config.sh'), 0o755)
  const tarball = join(root, 'linux-source-6.1.tar.xz')
  execFileSync('tar', ['-cJf', tarball, '-C', root, 'linux-source-6.1'])
  return tarball
}

function build(tarball: string, fragmentText: string, events: ProgressEvent[] = [], patches: string[] = []) {
  const dir = tmp()
  const fragment = join(dir, 'micro.config')
  writeFileSync(fragment, fragmentText)
  const patchFiles = patches.map((text, i) => {
    const f = join(dir, `000${i}.patch`)
    writeFileSync(f, text)
    return f
  })
  mkdirSync(join(dir, 'work'))
  return {
    out: join(dir, 'out'),
    run: buildKernel({
      tarball,
      fragment,
      patches: patchFiles,
      workDir: join(dir, 'work'),
      outDir: join(dir, 'out'),
      jobs: 1,
      expectedLines: 4,
      onProgress: (e) => events.push(e),
    }),
  }
}

describe('buildKernel', () => {
  it('a failing make ends with the step, the last 30 lines of its output and the log path', async () => {
    const tarball = fakeSource({ tinyconfig: 'for i in $$(seq 1 40); do echo "line $$i"; done; exit 2' }, '')
    const b = build(tarball, 'CONFIG_A=y\n')
    const err = await b.run.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KernelBuildError)
    const k = err as KernelBuildError
    expect(k.step).toBe('make tinyconfig (exit status 2)')
    // make's own complaint is the last of the 30 lines.
    expect(k.tail.split('\n')).toEqual([
      ...Array.from({ length: 29 }, (_, i) => `line ${i + 12}`),
      'make: *** [Makefile:3: tinyconfig] Error 2',
    ])
    expect(k.logPath).toBe(join(b.out, 'build.log'))
    expect(readFileSync(k.logPath, 'utf8')).toContain('line 1\n')
  })

  it('stops before compiling when kconfig dropped options of the fragment, listing them', async () => {
    const tarball = fakeSource(
      {
        tinyconfig: 'echo CONFIG_64BIT=y > .config',
        olddefconfig: 'true',
        vmlinux: 'echo compiled > compiled',
      },
      // Like merge_config.sh -m: the fragment's lines appended to .config; then "kconfig" drops B.
      'cat "$3" | grep -v CONFIG_B >> "$2"',
    )
    const b = build(tarball, 'CONFIG_64BIT=y\nCONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n')
    await expect(b.run).rejects.toThrow(
      /1 option\(s\) of .*micro\.config.*\n {2}CONFIG_B: wanted =y, got absent/,
    )
    expect(readFileSync(join(b.out, 'build.log'), 'utf8')).not.toContain('compiled')
  })

  it('applies the patches in order before configuring; one that does not apply stops the build', async () => {
    const recipes = {
      tinyconfig: 'true > .config',
      olddefconfig: 'true',
      bzImage: 'true',
      vmlinux:
        'echo elf > vmlinux; mkdir -p arch/x86/boot; echo bz > arch/x86/boot/bzImage; echo map > System.map',
    }
    // Makes the fake merge_config.sh write the option: the config shows the patch was applied.
    const mergeWrites = [
      '--- a/scripts/kconfig/merge_config.sh',
      '+++ b/scripts/kconfig/merge_config.sh',
      '@@ -1,2 +1,2 @@',
      ' #!/bin/sh',
      '-true',
      '+echo CONFIG_A=y >> "$2"',
      '',
    ].join('\n')
    const ok = build(fakeSource(recipes, 'true'), 'CONFIG_A=y\n', [], [mergeWrites])
    await ok.run
    expect(readFileSync(join(ok.out, 'config'), 'utf8')).toBe('CONFIG_A=y\n')

    // The same patch twice: the second finds its change already made (--forward) and fails.
    const twice = build(fakeSource(recipes, 'true'), 'CONFIG_A=y\n', [], [mergeWrites, mergeWrites])
    const err = await twice.run.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KernelBuildError)
    expect((err as KernelBuildError).step).toMatch(/^patch 0001\.patch \(exit status 1\)$/)
    expect(existsSync(join(twice.out, 'config'))).toBe(false)
  })

  it('reports the compile as a fraction from kbuild lines, and copies the artefacts', async () => {
    const kbuild = ['CC      a.o', 'CC      b.o', 'LD      vmlinux', 'not a kbuild line', 'BUILD   bzImage']
    const tarball = fakeSource(
      {
        tinyconfig: 'echo CONFIG_A=y > .config',
        olddefconfig: 'true',
        bzImage: 'true',
        vmlinux: [
          ...kbuild.map((l) => `@echo "  ${l}"`),
          'echo elf > vmlinux; mkdir -p arch/x86/boot; echo bz > arch/x86/boot/bzImage; echo map > System.map',
        ].join('\n'),
      },
      'true',
    )
    const events: ProgressEvent[] = []
    const b = build(tarball, 'CONFIG_A=y\n', events)
    expect(await b.run).toBe(4)
    const compile = events.filter((e) => e.stage === 'compile').map((e) => [e.message, e.fraction])
    expect(compile).toEqual([
      ['make -j1 vmlinux bzImage', 0],
      ['CC a.o', 0.25],
      ['CC b.o', 0.5],
      ['LD vmlinux', 0.75],
      ['BUILD bzImage', 0.99],
    ])
    expect(events.map((e) => e.stage).filter((s, i, a) => a[i - 1] !== s)).toEqual([
      'extract',
      'configure',
      'compile',
      'verify',
    ])
    expect(readFileSync(join(b.out, 'vmlinux'), 'utf8')).toBe('elf\n')
    expect(readFileSync(join(b.out, 'bzImage'), 'utf8')).toBe('bz\n')
    expect(readFileSync(join(b.out, 'config'), 'utf8')).toBe('CONFIG_A=y\n')
  })

  it('an abort kills the running command and everything it started, and rejects', async () => {
    const root = tmp()
    const pids = join(root, 'pids')
    // make runs a shell that starts a grandchild; both must go.
    const tarball = fakeSource({ tinyconfig: `sleep 60 & echo $$$$ $$! > ${pids}; wait` }, '')
    const stop = new AbortController()
    const dir = tmp()
    writeFileSync(join(dir, 'f'), 'CONFIG_A=y\n')
    mkdirSync(join(dir, 'work'))
    const run = buildKernel({
      tarball,
      fragment: join(dir, 'f'),
      workDir: join(dir, 'work'),
      outDir: join(dir, 'out'),
      onProgress: () => {},
      signal: stop.signal,
    })
    while (!existsSync(pids) || !readFileSync(pids, 'utf8').includes('\n')) await sleep(20)
    const started = Date.now()
    stop.abort()
    await expect(run).rejects.toMatchObject({ name: 'AbortError' })
    expect(Date.now() - started).toBeLessThan(5000)
    // Gone, or a zombie waiting for whichever process it was reparented to to reap it.
    const alive = (pid: number) => {
      try {
        return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0] !== 'Z'
      } catch {
        return false
      }
    }
    for (const pid of readFileSync(pids, 'utf8').trim().split(' ').map(Number)) expect(alive(pid)).toBe(false)
  })
})

describe('host checks', () => {
  it('one error names every missing package and the apt-get command', () => {
    const err = (() => {
      try {
        requireHost(
          [
            { command: 'sh', aptPackage: 'dash' },
            { command: 'vmm-no-such-tool-1', aptPackage: 'pkg-b' },
            { command: 'vmm-no-such-tool-2', aptPackage: 'pkg-a' },
          ],
          [{ file: '/nonexistent/header.h', aptPackage: 'libfoo-dev' }],
        )
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(MissingHostPackagesError)
    expect((err as Error).message).toMatch(
      /\n {2}install them with: apt-get install -y libfoo-dev pkg-a pkg-b$/,
    )
  })

  it('too little disk is an error naming free, needed and VMM_CACHE_DIR', () => {
    expect(() => requireFreeSpace(tmp(), 2 ** 60, 'the kernel build')).toThrow(
      /not enough disk space for the kernel build: .* GiB free in .*, 1073741824\.0 GiB needed.*VMM_CACHE_DIR/,
    )
  })
})

// The project's own patches against the real source: a new Debian linux-source-6.1 upload that
// moves the patched lines must fail here, not five minutes into a build.
const tarballMissing = existsSync(INSTALLED_LINUX_TARBALL)
  ? undefined
  : `${INSTALLED_LINUX_TARBALL} is not installed (apt-get install linux-source-6.1)`
if (tarballMissing) console.warn(`[kernel patch check skipped] ${tarballMissing}`)
describe.skipIf(tarballMissing)('kernel/patches against linux-source-6.1', () => {
  it('each patch applies to the installed source, in order', { timeout: 120_000 }, () => {
    const patches = kernelPatchPaths()
    expect(patches.length).toBeGreaterThan(0)
    const files = new Set<string>()
    for (const p of patches)
      for (const m of readFileSync(p, 'utf8').matchAll(/^\+\+\+ b\/(\S+)/gm))
        files.add(`linux-source-6.1/${m[1]}`)
    const root = tmp()
    execFileSync('tar', ['-xJf', INSTALLED_LINUX_TARBALL, '-C', root, ...files])
    for (const p of patches)
      execFileSync('patch', ['-p1', '--forward', '--batch', '-i', p], { cwd: join(root, 'linux-source-6.1') })
  })
})

// The default guest: the kernel and initramfs that `vmm run examples/micro.yaml` boots, made from
// Debian packages only and cached outside the repository (issue 4, "The default guest").
//
// Cache layout under <cacheRoot>/default-guest/:
//   kernel/<kernelKey>/        vmlinux, bzImage, config, System.map, build.log
//   initramfs/<initramfsKey>/  initramfs.cpio.gz
//   downloads/<pkg>_<ver>/     unpacked Debian packages
// The kernel and the initramfs have keys of their own so that editing /init does not cost a
// five-minute kernel build; the guest's cacheKey combines both.
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { rememberedAnswer } from './apt-memo.js'
import { acquireLock, cacheRoot, contentKey, lockHolder, removeTemporaries } from './cache.js'
import {
  APT_TOOLS,
  candidateVersion,
  fetchDebianPackage,
  installedVersion,
  KERNEL_HEADERS,
  KERNEL_TOOLS,
  requireFreeSpace,
  requireHost,
} from './host.js'
import { buildInitramfs } from './initramfs.js'
import { buildKernel, KernelBuildError } from './kernel.js'
import type { ProgressEvent } from './progress.js'
import { verifyKernelFiles } from './verify.js'

/**
 * Bump when the build steps change in a way that changes the artefacts (new make targets, a
 * different cpio layout...): it is part of both keys, so old cache entries stop matching.
 */
export const BUILDER_VERSION = '1'

export const LINUX_SOURCE_PACKAGE = 'linux-source-6.1'
export const BUSYBOX_PACKAGE = 'busybox-static'
/** Where Debian's linux-source-6.1 package installs the source tarball. */
export const INSTALLED_LINUX_TARBALL = '/usr/src/linux-source-6.1.tar.xz'

/** The files of this package that define the guest (found beside src/ and dist/ alike). */
export const FRAGMENT_PATH = fileURLToPath(new URL('../kernel/micro.config', import.meta.url))
export const INIT_PATH = fileURLToPath(new URL('../guest/init', import.meta.url))
export const INITTAB_PATH = fileURLToPath(new URL('../guest/inittab', import.meta.url))
/**
 * Kernel source patches, applied in name order. Kept to what the guest cannot run without on the
 * hosts we support; each file says why (kernel/patches/0001-*: SYSCALL on kvm_pvm hosts, issue 5).
 */
export const PATCHES_DIR = fileURLToPath(new URL('../kernel/patches/', import.meta.url))

/** The patch files of PATCHES_DIR in the order they are applied. */
export function kernelPatchPaths(dir = PATCHES_DIR): string[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir)
    .filter((n) => n.endsWith('.patch'))
    .sort()
    .map((n) => join(dir, n))
}

/**
 * ../../../shared/docs/anchors.md's default boot-test command line with the serial console on
 * (it has 8250.nr_uarts=0, which would remove ttyS0) and pci=off: the micro board has no PCI bus.
 */
export const SUGGESTED_CMDLINE =
  'console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd ' +
  'swiotlb=noforce cryptomgr.notests'

/** Disk the kernel build needs: the unpacked source (1.5 GiB) plus objects, with margin. */
const KERNEL_BUILD_BYTES = 3 * 2 ** 30

export interface DefaultGuest {
  /** ELF kernel with the PVH note. */
  vmlinux: string
  bzImage: string
  /** gzip-compressed cpio newc archive. */
  initramfs: string
  /** A command line for this guest on the micro board. */
  cmdline: string
  /** The kernel's final .config. */
  config: string
  cacheKey: string
  kernelKey: string
  initramfsKey: string
}

export interface GuestOptions {
  /** Overrides cacheRoot() ($VMM_CACHE_DIR, $XDG_CACHE_HOME/vmm, ~/.cache/vmm). */
  cacheDir?: string
  onProgress?: (e: ProgressEvent) => void
  /** make -j; defaults to CPUs + 1. */
  jobs?: number
  /** Stops a build (and its make), or a wait for another build's lock; nothing gets cached. */
  signal?: AbortSignal
}

/** What the keys are computed from: the content of our files and the Debian versions used. */
export interface GuestInputs {
  fragment: string
  /** Name and content of each kernel patch, in the order they are applied. */
  patches: readonly { name: string; text: string }[]
  init: string
  inittab: string
  linuxSourceVersion: string
  /** The tarball when linux-source-6.1 of that version is installed; else it is downloaded. */
  installedTarball: string | undefined
  busyboxVersion: string
}

/**
 * The inputs of the default guest's cache keys. The apt candidates are remembered under
 * `<cacheRoot>/default-guest` while apt's inputs stay the same (apt-memo.ts): asking apt costs
 * ~0.4 s, which every container start would pay.
 */
export async function resolveInputs(root: string = cacheRoot()): Promise<GuestInputs> {
  requireHost(APT_TOOLS)
  const memoDir = join(root, 'default-guest')
  const candidate = (pkg: string) =>
    rememberedAnswer(memoDir, `candidate ${pkg}`, () => candidateVersion(pkg))
  const installed = await installedVersion(LINUX_SOURCE_PACKAGE)
  const useInstalled = installed !== undefined && existsSync(INSTALLED_LINUX_TARBALL)
  return {
    fragment: readFileSync(FRAGMENT_PATH, 'utf8'),
    patches: kernelPatchPaths().map((p) => ({ name: basename(p), text: readFileSync(p, 'utf8') })),
    init: readFileSync(INIT_PATH, 'utf8'),
    inittab: readFileSync(INITTAB_PATH, 'utf8'),
    linuxSourceVersion: useInstalled ? installed : await candidate(LINUX_SOURCE_PACKAGE),
    installedTarball: useInstalled ? INSTALLED_LINUX_TARBALL : undefined,
    busyboxVersion: await candidate(BUSYBOX_PACKAGE),
  }
}

export function guestKeys(i: GuestInputs): { kernelKey: string; initramfsKey: string; cacheKey: string } {
  const kernelKey = contentKey({
    builder: BUILDER_VERSION,
    fragment: i.fragment,
    // Absent when there are none, so that keys made before patches existed still match.
    ...(i.patches.length > 0 ? { patches: JSON.stringify(i.patches) } : {}),
    [LINUX_SOURCE_PACKAGE]: i.linuxSourceVersion,
  })
  const initramfsKey = contentKey({
    builder: BUILDER_VERSION,
    init: i.init,
    inittab: i.inittab,
    [BUSYBOX_PACKAGE]: i.busyboxVersion,
  })
  return { kernelKey, initramfsKey, cacheKey: contentKey({ kernel: kernelKey, initramfs: initramfsKey }) }
}

function layout(root: string, i: GuestInputs) {
  const keys = guestKeys(i)
  const base = join(root, 'default-guest')
  const kernelDir = join(base, 'kernel', keys.kernelKey)
  const initramfsDir = join(base, 'initramfs', keys.initramfsKey)
  const guest: DefaultGuest = {
    vmlinux: join(kernelDir, 'vmlinux'),
    bzImage: join(kernelDir, 'bzImage'),
    config: join(kernelDir, 'config'),
    initramfs: join(initramfsDir, 'initramfs.cpio.gz'),
    cmdline: SUGGESTED_CMDLINE,
    ...keys,
  }
  return { base, kernelDir, initramfsDir, downloads: join(base, 'downloads'), guest }
}

/** The cached default guest, or undefined when it has not been built for the current inputs. */
export async function findDefaultGuest(
  options: Pick<GuestOptions, 'cacheDir'> = {},
): Promise<DefaultGuest | undefined> {
  const root = options.cacheDir ?? cacheRoot()
  const l = layout(root, await resolveInputs(root))
  return existsSync(l.kernelDir) && existsSync(l.initramfsDir) ? l.guest : undefined
}

/**
 * Builds what is missing from the cache and returns the paths. Safe to call concurrently from
 * several processes: one builds, the others wait for its lock and then find the entry.
 */
export async function ensureDefaultGuest(
  options: GuestOptions = {},
): Promise<DefaultGuest & { built: boolean }> {
  const progress = options.onProgress ?? (() => {})
  progress({ stage: 'resolve', message: 'package versions and cache keys' })
  const root = options.cacheDir ?? cacheRoot()
  const inputs = await resolveInputs(root)
  const l = layout(root, inputs)
  const kernelBuilt = await ensureEntry(
    l.kernelDir,
    progress,
    (tmp) => buildKernelEntry(tmp, inputs, l, options, progress),
    options.signal,
  )
  const initramfsBuilt = await ensureEntry(
    l.initramfsDir,
    progress,
    async (tmp) => {
      const busyboxRoot = join(l.downloads, `${BUSYBOX_PACKAGE}_${inputs.busyboxVersion}`)
      progress({ stage: 'download', message: `${BUSYBOX_PACKAGE} ${inputs.busyboxVersion}` })
      await fetchDebianPackage(BUSYBOX_PACKAGE, inputs.busyboxVersion, busyboxRoot, options.signal)
      progress({ stage: 'initramfs', message: 'busybox + /init into initramfs.cpio.gz' })
      writeFileSync(join(tmp, 'initramfs.cpio.gz'), buildInitramfs(busyboxRoot, inputs.init, inputs.inittab))
    },
    options.signal,
  )
  const built = kernelBuilt || initramfsBuilt
  progress({ stage: 'done', message: built ? 'built' : 'cached' })
  return { ...l.guest, built }
}

/**
 * Makes the cache entry `dir` unless it exists: under the key's lock, `fill` writes into a
 * temporary directory that is renamed to `dir` only once complete. Returns whether it built.
 */
export async function ensureEntry(
  dir: string,
  progress: (e: ProgressEvent) => void,
  fill: (tmp: string) => Promise<void>,
  signal?: AbortSignal,
): Promise<boolean> {
  if (existsSync(dir)) return false
  const parent = join(dir, '..')
  const key = dir.slice(parent.length + 1)
  mkdirSync(parent, { recursive: true })
  const release = await acquireLock(
    `${dir}.lock`,
    (holder) =>
      progress({
        stage: 'wait',
        message: `another build (pid ${holder.pid} on ${holder.host}) holds ${dir}.lock`,
      }),
    500,
    signal,
  )
  try {
    if (existsSync(dir)) return false
    // Left by a build that was killed: nobody else can be using them while we hold the lock.
    removeTemporaries(parent, `.tmp-${key}-`)
    const tmp = join(parent, `.tmp-${key}-${process.pid}`)
    mkdirSync(tmp)
    try {
      await fill(tmp)
      renameSync(tmp, dir)
    } finally {
      rmSync(tmp, { recursive: true, force: true })
    }
    return true
  } finally {
    release()
  }
}

async function buildKernelEntry(
  tmp: string,
  inputs: GuestInputs,
  l: ReturnType<typeof layout>,
  options: GuestOptions,
  progress: (e: ProgressEvent) => void,
) {
  requireHost([...KERNEL_TOOLS, ...APT_TOOLS], KERNEL_HEADERS)
  requireFreeSpace(tmp, KERNEL_BUILD_BYTES, 'the kernel build')
  let tarball = inputs.installedTarball
  if (!tarball) {
    const root = join(l.downloads, `${LINUX_SOURCE_PACKAGE}_${inputs.linuxSourceVersion}`)
    progress({
      stage: 'download',
      message: `${LINUX_SOURCE_PACKAGE} ${inputs.linuxSourceVersion} (about 140 MB)`,
    })
    await fetchDebianPackage(LINUX_SOURCE_PACKAGE, inputs.linuxSourceVersion, root, options.signal)
    tarball = join(root, INSTALLED_LINUX_TARBALL)
  }
  const linesFile = join(l.base, 'kernel', 'make-lines')
  const previousLines = Number.parseInt(existsSync(linesFile) ? readFileSync(linesFile, 'utf8') : '', 10)
  const workDir = join(tmp, 'src')
  mkdirSync(workDir)
  // The build reads the fragment and patches the cache key was computed from (inputs), not the
  // files again: an edit in between must not cache a kernel under the other content's key.
  const inputDir = join(workDir, 'vmm-inputs')
  mkdirSync(join(inputDir, 'patches'), { recursive: true })
  const fragment = join(inputDir, basename(FRAGMENT_PATH))
  writeFileSync(fragment, inputs.fragment)
  const patches = inputs.patches.map((p) => {
    const file = join(inputDir, 'patches', p.name)
    writeFileSync(file, p.text)
    return file
  })
  try {
    const lines = await buildKernel({
      tarball,
      fragment,
      patches,
      workDir,
      outDir: tmp,
      onProgress: progress,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.jobs ? { jobs: options.jobs } : {}),
      ...(Number.isFinite(previousLines) ? { expectedLines: previousLines } : {}),
    })
    writeFileSync(linesFile, `${lines}\n`)
  } catch (e) {
    if (options.signal?.aborted) throw e
    // Keep the log where the error message points: the temporary directory is about to go.
    const kept = join(l.base, 'kernel', `failed-${guestKeys(inputs).kernelKey}.log`)
    try {
      renameSync(join(tmp, 'build.log'), kept)
    } catch {}
    if (e instanceof KernelBuildError) throw new KernelBuildError(e.step, kept, e.tail)
    throw e
  }
  progress({ stage: 'verify', message: 'PVH note of vmlinux, setup header of bzImage' })
  verifyKernelFiles(join(tmp, 'vmlinux'), join(tmp, 'bzImage'))
  // The entry keeps the output only: the 1.6 GiB source tree is not worth keeping.
  progress({ stage: 'verify', message: 'removing the source tree' })
  rmSync(workDir, { recursive: true, force: true })
}

/** Removes built entries and downloads; refuses while a build holds a lock. Returns what it removed. */
export function cleanDefaultGuest(options: Pick<GuestOptions, 'cacheDir'> = {}): string {
  const base = join(options.cacheDir ?? cacheRoot(), 'default-guest')
  for (const kind of ['kernel', 'initramfs']) {
    let names: string[] = []
    try {
      names = readdirSync(join(base, kind))
    } catch {}
    for (const n of names) {
      const holder = n.endsWith('.lock') ? lockHolder(join(base, kind, n)) : undefined
      if (holder)
        throw new Error(
          `a build (pid ${holder.pid} on ${holder.host}) is running: ${join(base, kind, n)}; not cleaning`,
        )
    }
  }
  rmSync(base, { recursive: true, force: true })
  return base
}

/**
 * Points `<dir>/vmlinux`, `bzImage` and `initramfs.cpio.gz` at the cached files (symbolic links,
 * replaced if present), where a manifest such as examples/micro.yaml names them (`.guest/...`).
 */
export function linkDefaultGuest(
  guest: Pick<DefaultGuest, 'vmlinux' | 'bzImage' | 'initramfs'>,
  dir: string,
) {
  mkdirSync(dir, { recursive: true })
  for (const [name, target] of [
    ['vmlinux', guest.vmlinux],
    ['bzImage', guest.bzImage],
    ['initramfs.cpio.gz', guest.initramfs],
  ] as const) {
    // A fresh link renamed over the old one: a concurrent reader never sees the name missing.
    const tmp = join(dir, `.${name}.${process.pid}`)
    rmSync(tmp, { force: true })
    symlinkSync(target, tmp)
    renameSync(tmp, join(dir, name))
  }
}

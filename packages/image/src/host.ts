// What the build needs from the host: programs (named with the Debian package that provides
// them, so an error can say what to install) and Debian packages fetched with apt.
import { execFile as execFileCb } from 'node:child_process'
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  statfsSync,
} from 'node:fs'
import { delimiter, join } from 'node:path'
import { promisify } from 'node:util'

const execFile = promisify(execFileCb)

/** A program the build runs and the Debian (bookworm) package that provides it. */
export interface HostTool {
  command: string
  aptPackage: string
}

/** Programs of the kernel build (Documentation/process/changes.rst, as far as this configuration uses them). */
export const KERNEL_TOOLS: readonly HostTool[] = [
  { command: 'make', aptPackage: 'make' },
  { command: 'gcc', aptPackage: 'gcc' },
  { command: 'ld', aptPackage: 'binutils' },
  { command: 'bc', aptPackage: 'bc' },
  { command: 'bison', aptPackage: 'bison' },
  { command: 'flex', aptPackage: 'flex' },
  { command: 'perl', aptPackage: 'perl' },
  { command: 'xz', aptPackage: 'xz-utils' },
  // CONFIG_KERNEL_LZ4 (kernel/micro.config) compresses the bzImage payload with the lz4 program.
  { command: 'lz4', aptPackage: 'lz4' },
  { command: 'tar', aptPackage: 'tar' },
  // kernel/patches/*.patch
  { command: 'patch', aptPackage: 'patch' },
]

/** Programs that fetch and unpack Debian packages. */
export const APT_TOOLS: readonly HostTool[] = [
  { command: 'apt-get', aptPackage: 'apt' },
  { command: 'apt-cache', aptPackage: 'apt' },
  { command: 'dpkg-deb', aptPackage: 'dpkg' },
  { command: 'dpkg-query', aptPackage: 'dpkg' },
]

/** Headers and libraries the kernel build includes: no program to look for, so look for the file. */
export const KERNEL_HEADERS: readonly { file: string; aptPackage: string }[] = [
  // objtool, built for every x86-64 kernel, links against libelf. (OpenSSL, which
  // Documentation/process/changes.rst lists, is for module signing and certificates: this
  // configuration builds neither.)
  { file: '/usr/include/gelf.h', aptPackage: 'libelf-dev' },
  // The host programs of the build (fixdep, kconfig's conf, objtool) are C.
  { file: '/usr/include/stdio.h', aptPackage: 'libc6-dev' },
]

export class MissingHostPackagesError extends Error {
  constructor(readonly packages: readonly string[]) {
    super(
      `the default guest build needs these Debian packages: ${packages.join(' ')}\n` +
        `  install them with: apt-get install -y ${packages.join(' ')}`,
    )
    this.name = 'MissingHostPackagesError'
  }
}

function onPath(command: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue
    try {
      accessSync(join(dir, command), constants.X_OK)
      return true
    } catch {}
  }
  return false
}

/** Throws one error that lists every missing package, so one `apt-get install` fixes them all. */
export function requireHost(
  tools: readonly HostTool[],
  files: readonly { file: string; aptPackage: string }[] = [],
) {
  const missing = new Set<string>()
  for (const t of tools) if (!onPath(t.command)) missing.add(t.aptPackage)
  for (const f of files) if (!existsSync(f.file)) missing.add(f.aptPackage)
  if (missing.size > 0) throw new MissingHostPackagesError([...missing].sort())
}

/** Throws when the file system holding `dir` has less than `bytes` free. */
export function requireFreeSpace(dir: string, bytes: number, what: string) {
  mkdirSync(dir, { recursive: true })
  const s = statfsSync(dir)
  const free = s.bavail * s.bsize
  if (free < bytes) {
    const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`
    throw new Error(
      `not enough disk space for ${what}: ${gib(free)} free in ${dir}, ${gib(bytes)} needed ` +
        '(set VMM_CACHE_DIR to a directory on a larger file system)',
    )
  }
}

async function run(cmd: string, args: string[], cwd?: string, signal?: AbortSignal): Promise<string> {
  try {
    // apt and dpkg translate their messages; parse them in the C locale.
    const { stdout } = await execFile(cmd, args, {
      cwd,
      ...(signal ? { signal } : {}),
      env: { ...process.env, LC_ALL: 'C' },
      maxBuffer: 64 * 2 ** 20,
    })
    return stdout
  } catch (e) {
    if (signal?.aborted) throw signal.reason
    const err = e as { stderr?: string; message: string }
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(err.stderr || err.message).trim()}`)
  }
}

/** The installed version of a Debian package, or undefined. */
export async function installedVersion(pkg: string): Promise<string | undefined> {
  try {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own ${field} format, not a template
    const out = await run('dpkg-query', ['-W', '-f=${db:Status-Status} ${Version}', pkg])
    const [status, version] = out.trim().split(' ')
    return status === 'installed' && version ? version : undefined
  } catch {
    return undefined
  }
}

/** The version `apt-get download` would fetch, from the local package lists (no network). */
export async function candidateVersion(pkg: string): Promise<string> {
  const out = await run('apt-cache', ['policy', pkg])
  const candidate = /^\s*Candidate:\s*(\S+)/m.exec(out)?.[1]
  if (!candidate || candidate === '(none)')
    throw new Error(
      `apt knows no candidate version of ${pkg}: run \`apt-get update\` (Debian bookworm lists)`,
    )
  return candidate
}

/**
 * Downloads `pkg` at `version` with `apt-get download` and unpacks it (`dpkg-deb -x`) into
 * `dest`, through a temporary directory beside it so an interrupted run leaves no half tree.
 * No root needed: apt-get download writes to the working directory.
 */
export async function fetchDebianPackage(
  pkg: string,
  version: string,
  dest: string,
  signal?: AbortSignal,
): Promise<void> {
  if (existsSync(dest)) return
  const tmp = `${dest}.tmp-${process.pid}`
  rmSync(tmp, { recursive: true, force: true })
  mkdirSync(tmp, { recursive: true })
  try {
    await run('apt-get', ['download', `${pkg}=${version}`], tmp, signal)
    const deb = readdirSync(tmp).find((f) => f.endsWith('.deb'))
    if (!deb) throw new Error(`apt-get download ${pkg}=${version} produced no .deb`)
    await run('dpkg-deb', ['-x', join(tmp, deb), join(tmp, 'root')], undefined, signal)
    rmSync(join(tmp, deb))
    try {
      renameSync(join(tmp, 'root'), dest)
    } catch (e) {
      // Another build (of another key) unpacked the same package first: theirs is as good.
      if (!existsSync(dest)) throw e
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true })
  }
}

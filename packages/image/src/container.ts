// The container guest (issue 16): the default guest's kernel (virtio-9p, vsock, UNIX98 ptys) with
// an initramfs whose /init is a container runtime's guest agent, compiled here from its C sources
// with `gcc -static` against glibc's libc.a (libc6-dev) and cached like the default guest:
// <cacheRoot>/container-guest/initramfs/<key>/initramfs.cpio.gz, the key made from the sources.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cacheRoot, contentKey } from './cache.js'
import { type CpioEntry, gzipCpio, writeCpio } from './cpio.js'
import { ensureDefaultGuest, ensureEntry, type GuestOptions } from './guest.js'
import { requireHost } from './host.js'

export interface ContainerGuest {
  vmlinux: string
  initramfs: string
  kernelKey: string
  initramfsKey: string
}

/** The archive around the agent: mount points, /dev/console for the kernel's first open, /init. */
export function containerInitramfsEntries(agent: Uint8Array): CpioEntry[] {
  return [
    ...['dev', 'proc', 'sys', 'run', 'newroot'].map((path): CpioEntry => ({ type: 'dir', path })),
    { type: 'dir', path: 'tmp', mode: 0o1777 },
    { type: 'char', path: 'dev/console', major: 5, minor: 1, mode: 0o600 },
    { type: 'char', path: 'dev/null', major: 1, minor: 3, mode: 0o666 },
    { type: 'file', path: 'init', data: agent, mode: 0o755 },
  ]
}

/**
 * Builds what is missing (the kernel through ensureDefaultGuest, which waits on another build's
 * lock; the agent and its initramfs here) and returns the paths. `agentDir` holds the agent's
 * *.c and *.h files.
 */
export async function ensureContainerGuest(
  agentDir: string,
  options: GuestOptions = {},
): Promise<ContainerGuest> {
  const guest = await ensureDefaultGuest(options)
  const sources = readdirSync(agentDir)
    .filter((n) => n.endsWith('.c') || n.endsWith('.h'))
    .sort()
  const initramfsKey = contentKey({
    builder: '1',
    ...Object.fromEntries(sources.map((n) => [n, readFileSync(join(agentDir, n), 'utf8')])),
  })
  const dir = join(options.cacheDir ?? cacheRoot(), 'container-guest', 'initramfs', initramfsKey)
  await ensureEntry(
    dir,
    options.onProgress ?? (() => {}),
    async (tmp) => {
      // glibc's static libc.a comes with libc6-dev.
      requireHost(
        [{ command: 'gcc', aptPackage: 'gcc' }],
        [{ file: '/usr/lib/x86_64-linux-gnu/libc.a', aptPackage: 'libc6-dev' }],
      )
      const agent = join(tmp, 'init')
      const cfiles = sources.filter((n) => n.endsWith('.c')).map((n) => join(agentDir, n))
      execFileSync('gcc', ['-static', '-Os', '-s', '-Wall', '-o', agent, ...cfiles], { stdio: 'pipe' })
      writeFileSync(
        join(tmp, 'initramfs.cpio.gz'),
        gzipCpio(writeCpio(containerInitramfsEntries(readFileSync(agent)))),
      )
    },
    options.signal,
  )
  return {
    vmlinux: guest.vmlinux,
    initramfs: join(dir, 'initramfs.cpio.gz'),
    kernelKey: guest.kernelKey,
    initramfsKey,
  }
}

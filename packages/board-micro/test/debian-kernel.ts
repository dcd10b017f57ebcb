// Debian's cloud kernel for loader tests: its bzImage, and the vmlinux ELF inside it (the payload
// is LZ4, at the offset and length the setup header gives at 0x248/0x24c). Fetched with
// `apt-get download` once into ~/.cache/vmm/test-kernels; tests skip with the reason when that
// is impossible (no apt, no network, no lz4).
import { execFileSync, execSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'

const PACKAGE = 'linux-image-6.1.0-56-cloud-amd64'
const cacheDir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'vmm', 'test-kernels')

export interface DebianKernel {
  bzImage: string
  vmlinux: string
}

let cached: DebianKernel | string | undefined

/** The kernel's files, or a string saying why they cannot be had here. */
export function debianKernel(): DebianKernel | string {
  if (cached) return cached
  try {
    mkdirSync(cacheDir, { recursive: true })
    const bzImage = join(cacheDir, 'vmlinuz')
    const vmlinux = join(cacheDir, 'vmlinux')
    if (!existsSync(bzImage)) {
      if (!readdirSync(cacheDir).some((f) => f.startsWith(PACKAGE) && f.endsWith('.deb')))
        execFileSync('apt-get', ['download', PACKAGE], { cwd: cacheDir, stdio: 'pipe' })
      const deb = readdirSync(cacheDir).find((f) => f.startsWith(PACKAGE) && f.endsWith('.deb'))!
      execSync(
        `dpkg-deb --fsys-tarfile ${deb} | tar -xO --wildcards './boot/vmlinuz-*' > vmlinuz.tmp && mv vmlinuz.tmp vmlinuz`,
        {
          cwd: cacheDir,
          stdio: 'pipe',
        },
      )
    }
    if (!existsSync(vmlinux)) {
      const b = readFileSync(bzImage)
      const pm = b.subarray(((b[0x1f1] || 4) + 1) * 512)
      const off = b.readUInt32LE(0x248)
      const len = b.readUInt32LE(0x24c)
      writeFileSync(join(cacheDir, 'payload.lz4'), pm.subarray(off, off + len))
      // The kernel appends the uncompressed size after the LZ4 frames; lz4 decodes the frames,
      // then complains about those 4 bytes (exit 1), so judge by the output.
      try {
        execSync('lz4 -dc payload.lz4 > vmlinux.tmp', { cwd: cacheDir, stdio: 'pipe' })
      } catch {}
      const head = readFileSync(join(cacheDir, 'vmlinux.tmp')).subarray(0, 4)
      if (head.toString('latin1') !== '\x7fELF')
        throw new Error('lz4 did not produce an ELF (is the lz4 package installed?)')
      execSync('mv vmlinux.tmp vmlinux', { cwd: cacheDir })
    }
    cached = { bzImage, vmlinux }
  } catch (e) {
    cached = `Debian's kernel package ${PACKAGE} is not available: ${(e as Error).message.split('\n')[0]}`
  }
  return cached
}

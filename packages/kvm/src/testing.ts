// @vmm/kvm/testing: builds tiny guests from assembly at test time with the system toolchain
// (binutils `as` + `ld`), so tests carry readable source instead of opaque blobs. Results are
// cached per source text. Shared by this package's tests and other packages' KVM tests.
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const cacheDir = join(tmpdir(), 'vmm-test-guests')

/**
 * Assembles `source` (GNU as, Intel syntax; start with `.code16`, `.code32` or `.code64`) into a
 * flat binary linked to run at guest address `origin`.
 */
export function assemble(source: string, origin = 0x1000): Uint8Array {
  const text = `.intel_syntax noprefix\n${source}\n`
  const key = createHash('sha256').update(`${origin}\n${text}`).digest('hex').slice(0, 16)
  const bin = join(cacheDir, `${key}.bin`)
  if (!existsSync(bin)) {
    mkdirSync(cacheDir, { recursive: true })
    const src = join(cacheDir, `${key}.S`)
    const obj = join(cacheDir, `${key}.o`)
    writeFileSync(src, text)
    execFileSync('as', ['--64', '-o', obj, src], { stdio: 'pipe' })
    execFileSync(
      'ld',
      ['-m', 'elf_x86_64', `-Ttext=0x${origin.toString(16)}`, '--oformat=binary', '-e', '0', '-o', bin, obj],
      {
        stdio: 'pipe',
      },
    )
  }
  return new Uint8Array(readFileSync(bin))
}

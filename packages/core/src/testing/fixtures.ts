import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

/**
 * Writes `files` (path -> content) into a fresh temporary directory named `<prefix>XXXXXX` and
 * returns it: the manifests, kernels and plugins a test needs on disk, made in one call.
 */
export function fixture(files: Record<string, string | Uint8Array>, prefix = 'vmm-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true })
    writeFileSync(join(dir, name), content)
  }
  return dir
}

/** A real-mode guest that writes "ok" to the debug console at 0xe9 and halts. */
export const helloGuest = Uint8Array.of(
  0xb0,
  0x6f, // mov al, 'o'
  0xe6,
  0xe9, // out 0xe9, al
  0xb0,
  0x6b, // mov al, 'k'
  0xe6,
  0xe9, // out 0xe9, al
  0xf4, // hlt
)

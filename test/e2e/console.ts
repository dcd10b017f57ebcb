// The serial console of a `vmm run` child process, for end-to-end tests that drive a guest's shell.
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { type DefaultGuest, ensureDefaultGuest } from '@vmm/image'
import { watchConsole } from './guest-harness.mjs'

/** The default guest, built first when it is not cached (printing the build's stages). */
export function defaultGuest(): Promise<DefaultGuest> {
  return ensureDefaultGuest({
    onProgress: (e) => {
      if (e.stage !== 'compile') console.log(`[default guest] ${e.stage}: ${e.message}`)
    },
  })
}

/** The guest's console (vmm's stdout and stderr together), and a way to wait for text in it. */
export interface GuestConsole {
  text(): string
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** How vmm exited; rejects, with the console's end, when it still runs after `timeoutMs`. */
  exitWithin(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Resolves with the text after `from` once it matches; rejects on exit or timeout, with the console's end. */
  waitFor(pattern: RegExp, from: number, timeoutMs: number): Promise<string>
}

/** guest-harness.mjs's watchConsole (shared with the benchmarks), typed. */
export function consoleOf(child: ChildProcessWithoutNullStreams): GuestConsole {
  return watchConsole(child) as GuestConsole
}

// The serial console of a `vmm run` child process, for end-to-end tests that drive a guest's shell.
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { connect, type Socket } from 'node:net'
import { PassThrough } from 'node:stream'
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

/**
 * The serial console of a machine run in this process with `serial: { console: socket, path }`:
 * connects to the socket (the serial component keeps what the guest wrote before), and watches it
 * as watchConsole watches a child process, the run's end (`done`) as its exit.
 */
export async function socketConsole(
  path: string,
  done: Promise<{ code: number }>,
): Promise<{ con: GuestConsole; sock: Socket }> {
  let sock: Socket | undefined
  for (let i = 0; !sock; i++) {
    const attempt = connect(path)
    try {
      await new Promise<void>((resolve, reject) => attempt.once('connect', resolve).once('error', reject))
      sock = attempt
    } catch (e) {
      if (i > 50) throw e
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  const con = watchConsole({
    stdout: sock,
    stderr: new PassThrough(),
    on: (event: string, f: (code: number, signal: null) => void) => {
      if (event === 'exit') void done.then((r) => f(r.code, null))
    },
  }) as GuestConsole
  return { con, sock }
}

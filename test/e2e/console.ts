// The serial console of a `vmm run` child process, for end-to-end tests that drive a guest's shell.
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { type DefaultGuest, ensureDefaultGuest } from '@vmm/image'

/** The default guest, built first when it is not cached (printing the build's stages). */
export function defaultGuest(): Promise<DefaultGuest> {
  return ensureDefaultGuest({
    onProgress: (e) => {
      if (e.stage !== 'compile') console.log(`[default guest] ${e.stage}: ${e.message}`)
    },
  })
}

export type GuestConsole = ReturnType<typeof consoleOf>

/** The guest's console (vmm's stdout and stderr together), and a way to wait for text in it. */
export function consoleOf(child: ChildProcessWithoutNullStreams) {
  let text = ''
  const waiters: (() => void)[] = []
  const onData = (chunk: Buffer) => {
    text += chunk.toString('latin1')
    for (const w of waiters.splice(0)) w()
  }
  child.stdout.on('data', onData)
  child.stderr.on('data', onData)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  )
  let done = false
  void exited.then(() => {
    done = true
    for (const w of waiters.splice(0)) w()
  })
  return {
    text: () => text,
    exited,
    /** How vmm exited; rejects, with the console's end, when it still runs after `timeoutMs`. */
    exitWithin(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`vmm still running ${timeoutMs / 1000} s later:\n${text.slice(-3000)}`)),
          timeoutMs,
        )
        timer.unref()
      })
      return Promise.race([exited, late]).finally(() => clearTimeout(timer))
    },
    /** Resolves with the text after `from` once it matches; rejects on exit or timeout, with the console's end. */
    async waitFor(pattern: RegExp, from: number, timeoutMs: number): Promise<string> {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const seen = text.slice(from)
        if (pattern.test(seen)) return seen
        if (done || Date.now() > deadline)
          throw new Error(
            `${done ? 'vmm exited' : `no ${pattern} within ${timeoutMs / 1000} s`} ` +
              `before ${pattern} appeared; console so far ends with:\n${text.slice(-3000)}`,
          )
        await new Promise<void>((resolve) => {
          waiters.push(resolve)
          setTimeout(resolve, 1000).unref()
        })
      }
    },
  }
}

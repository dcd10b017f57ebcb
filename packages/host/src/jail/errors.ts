// What the jail's plan refuses, and the mode-bit check the plan makers share. A JailUsageError is
// bad input found before anything is made (the caller answers it in one line and changes nothing).
import type { Stats } from 'node:fs'

export class JailUsageError extends Error {
  override readonly name = 'JailUsageError'
}

/** `path` as a plan field: the plan is TAB- and newline-separated (vmm-jail.c), so neither may be in it. */
export function checkPlanPath(what: string, path: string): string {
  if (/[\t\n\0]/.test(path))
    throw new JailUsageError(
      `${what} ${JSON.stringify(path)}: a TAB, newline or NUL in a path is not supported`,
    )
  return path
}

/** Whether uid/gid may use `st` for `bits` (4 read, 2 write, 1 search/execute), by its mode bits. */
export function permits(st: Stats, uid: number, gid: number, bits: number): boolean {
  const mode = st.uid === uid ? st.mode >> 6 : st.gid === gid ? st.mode >> 3 : st.mode
  return (mode & bits) === bits
}

// The socket's file: created 0600, and never put in place of a file that is not a stale socket.
// TODO(hardening): replace with the shared helper the `hardening` branch adds (stale-socket
// check + 0600 listen); the lead unifies them.
import { lstatSync, unlinkSync } from 'node:fs'
import { connect } from 'node:net'

/**
 * Makes `path` free for a new socket: nothing there, or a socket no one listens on (removed).
 * Rejects when a regular file, directory or other non-socket is there, or a server answers on it.
 */
export async function clearStaleSocket(path: string): Promise<void> {
  let st: ReturnType<typeof lstatSync>
  try {
    st = lstatSync(path)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
    throw e
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; not replacing it`)
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path)
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
  if (live) throw new Error(`${path}: another server is listening on it`)
  unlinkSync(path)
}

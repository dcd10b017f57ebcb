// The one way vmm listens on a Unix socket path (the serial console's `console: socket`,
// virtio-console's socket back end, virtio-vsock, the control plane's QMP socket). A VMM must never
// remove a file it did not create: a path a user mistyped (`path: disk.img`) is an error, not a
// file to delete. The only file replaced is a stale socket, one that is a socket and that nothing
// listens on (a killed run's leftover), as QEMU's `server=on` leaves it to the user but systemd's
// socket units replace: connect(2) to it is refused (ECONNREFUSED, unix(7)) when no one listens.
import { lstatSync, unlinkSync } from 'node:fs'
import { createConnection, type Server } from 'node:net'
import { dirname } from 'node:path'

/** Why a Unix socket could not be listened on; the message names the owner and the path. */
export class UnixSocketError extends Error {
  override readonly name = 'UnixSocketError'
  constructor(
    readonly path: string,
    message: string,
    /** The errno code of the failing call (EADDRINUSE, ENOENT, EACCES...) or EEXIST for a non-socket file. */
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/** A Unix socket `listenUnixSocket` listens on; `close` removes the socket file if it is still the one it made. */
export interface UnixSocketListener {
  readonly path: string
  /** Stops listening and removes the socket file this listener created (only that file). */
  close(): void
}

/** sockaddr_un's sun_path holds 108 bytes with the terminating NUL (unix(7)). */
const SUN_PATH_MAX = 107

/**
 * Listens on the Unix socket `path` with `server`. `owner` names who listens, for the message
 * ("virtio-vsock socket", "serial console socket"). A socket at `path` that nothing listens on is
 * replaced; anything else at `path` (a regular file, a directory, a socket another process serves)
 * is a UnixSocketError naming the path, as is a missing directory or a permission error. Resolves
 * once the server listens.
 */
export async function listenUnixSocket(
  server: Server,
  path: string,
  owner: string,
): Promise<UnixSocketListener> {
  const fail = (code: string, why: string, cause?: unknown) =>
    new UnixSocketError(path, `${owner}: cannot listen on ${path}: ${why}`, code, { cause })
  if (Buffer.byteLength(path) > SUN_PATH_MAX)
    throw fail(
      'ENAMETOOLONG',
      `the path is ${Buffer.byteLength(path)} bytes; a Unix socket path has at most ${SUN_PATH_MAX}`,
    )
  for (let attempt = 0; ; attempt++) {
    const error = await listenOnce(server, path)
    if (error === undefined) break
    if (error.code !== 'EADDRINUSE' || attempt > 0) throw explain(error, path, fail)
    const stat = lstatOrUndefined(path)
    if (stat === undefined) continue // gone in the meantime: try again
    if (!stat.isSocket())
      throw fail(
        'EEXIST',
        `it exists and is ${stat.isDirectory() ? 'a directory' : stat.isFile() ? 'a regular file' : 'not a socket'}; ` +
          'vmm never deletes a file it did not create: choose another path, or remove the file yourself',
      )
    if (await someoneListens(path))
      throw fail('EADDRINUSE', 'another process is listening on it (is this machine already running?)')
    // A stale socket: nothing listens, so nothing is lost by replacing it.
    try {
      unlinkSync(path)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        throw explain(e as NodeJS.ErrnoException, path, fail)
    }
  }
  const made = lstatOrUndefined(path)
  return {
    path,
    close() {
      server.close()
      // Only the socket this listener made: a user may have replaced it since.
      const now = lstatOrUndefined(path)
      if (made && now?.isSocket() && now.ino === made.ino && now.dev === made.dev) {
        try {
          unlinkSync(path)
        } catch {}
      }
    },
  }
}

function listenOnce(server: Server, path: string): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const onError = (e: NodeJS.ErrnoException) => {
      server.off('listening', onListening)
      resolve(e)
    }
    const onListening = () => {
      server.off('error', onError)
      resolve(undefined)
    }
    server.once('error', onError)
    server.once('listening', onListening)
    server.listen(path)
  })
}

/** Connects to `path`: true when a server accepts, false when the connection is refused. */
function someoneListens(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path)
    probe.once('connect', () => {
      probe.destroy()
      resolve(true)
    })
    // ECONNREFUSED: a socket file with no listener; anything else (EACCES) we cannot tell, so the
    // file is not ours to replace.
    probe.once('error', (e: NodeJS.ErrnoException) => resolve(e.code !== 'ECONNREFUSED'))
  })
}

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(path)
  } catch {
    return undefined
  }
}

function explain(
  e: NodeJS.ErrnoException,
  path: string,
  fail: (code: string, why: string, cause?: unknown) => UnixSocketError,
): UnixSocketError {
  const code = e.code ?? 'EIO'
  // bind(2) answers EACCES as well as ENOENT for a directory that is not there.
  if ((code === 'ENOENT' || code === 'EACCES') && lstatOrUndefined(dirname(path)) === undefined)
    return fail(code, `the directory ${dirname(path)} does not exist`, e)
  switch (code) {
    case 'ENOENT':
      return fail(code, `the directory ${dirname(path)} does not exist`, e)
    case 'ENOTDIR':
      return fail(code, `a component of ${dirname(path)} is not a directory`, e)
    case 'EACCES':
    case 'EPERM':
      return fail(code, `permission denied (writing ${dirname(path)} needs write and search permission)`, e)
    case 'EROFS':
      return fail(code, `${dirname(path)} is on a read-only file system`, e)
    case 'EADDRINUSE':
      return fail(code, 'the address is in use', e)
    default:
      return fail(code, e.message, e)
  }
}

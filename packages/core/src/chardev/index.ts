// Character back ends (stdio, file, socket) for the devices that carry a byte stream to the host:
// the 16550A UART of @vmm/board-micro and virtio-console of @vmm/virtio.
import { type CharBackend, type CharBackendKind, FileCharBackend } from './backend.js'
import { SocketCharBackend, type SocketOptions } from './socket.js'
import { StdioCharBackend, type StdioOptions } from './stdio.js'

export { type CharBackend, type CharBackendKind, FileCharBackend, OutputBatcher } from './backend.js'
export { SocketCharBackend, type SocketOptions } from './socket.js'
export { StdioCharBackend, type StdioOptions } from './stdio.js'
export { listenUnixSocket, UnixSocketError, type UnixSocketListener } from './unix-socket.js'

/** How a device wants each kind opened (its defaults for the terminal and the socket). */
export interface CharBackendPolicy {
  stdio?: StdioOptions
  socket?: SocketOptions
}

/** Opens the back end a manifest names; `path` is required for file and socket (checked at validation). */
export function openCharBackend(
  kind: CharBackendKind,
  path: string | undefined,
  policy: CharBackendPolicy = {},
): CharBackend {
  switch (kind) {
    case 'stdio':
      return new StdioCharBackend(policy.stdio)
    case 'file':
      return new FileCharBackend(need(kind, path))
    case 'socket':
      return new SocketCharBackend(need(kind, path), policy.socket)
  }
}

function need(kind: CharBackendKind, path: string | undefined): string {
  if (!path) throw new Error(`a ${kind} character back end needs a path`)
  return path
}

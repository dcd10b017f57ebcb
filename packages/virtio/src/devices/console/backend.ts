// virtio-console's back ends are @vmm/core's character back ends (the serial console uses the same
// ones); these names keep virtio-console's own policy for stdio and the socket.
import { type CharBackend, SocketCharBackend, StdioCharBackend } from '@vmm/core'

/** Where a console's bytes go and come from. */
export type ConsoleBackend = CharBackend

/** The VMM's own stdin/stdout, the terminal left in its mode (the serial console sets raw mode). */
export class StdioBackend extends StdioCharBackend {
  constructor() {
    super({ raw: false })
  }
}

/**
 * A Unix socket the VMM listens on, for one client at a time; a second is told "console busy".
 * Output while nobody is connected is dropped, as on a serial line with nothing attached.
 */
export class SocketBackend extends SocketCharBackend {
  constructor(path: string) {
    super(path, { keepWhileDisconnected: 0, secondClient: 'refuse', owner: 'virtio-console socket' })
  }
}

// eventfds (eventfd(2)), watched on the event loop: what KVM's ioeventfd signals when the guest
// writes a doorbell, and what irqfd listens on to raise an interrupt without a syscall from us.
import { type NativeFdWatch, native } from './native.js'

/** An eventfd, optionally watched on the event loop. Non-blocking and close-on-exec. */
export class EventFd {
  private watch: NativeFdWatch | undefined
  private closed = false

  /** Takes ownership of `fd`, an eventfd; `EventFd.create()` makes a new one. */
  constructor(readonly fd: number) {}

  static create(initial = 0): EventFd {
    return new EventFd(native().eventfd(initial))
  }

  /** The counter since the last read, or 0n when nothing was signalled. */
  read(): bigint {
    return native().eventfdRead(this.fd) ?? 0n
  }

  write(value = 1n): void {
    native().eventfdWrite(this.fd, value)
  }

  /** Calls `onSignal(count)` on the event loop whenever the eventfd is signalled. */
  onSignal(onSignal: (count: bigint) => void): void {
    const n = native()
    this.watch?.close()
    this.watch = new n.FdWatch(
      this.fd,
      () => {
        const v = n.eventfdRead(this.fd)
        if (v !== null) onSignal(v)
      },
      false,
    )
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.watch?.close()
    native().closeFd(this.fd)
  }
}

// TAP devices (Documentation/networking/tuntap.rst): packets in and out of a host network
// interface, read and written straight into guest memory, with a readiness watch on the event
// loop. Thin wrappers over the native module (src/native/tap.cc, fd.cc).
import { type NativeFdWatch, native } from './native.js'

/** TUNSETOFFLOAD flags (include/uapi/linux/if_tun.h). */
export const TapOffload = { Csum: 1, Tso4: 2, Tso6: 4, TsoEcn: 8, Ufo: 16 } as const

/** A TAP interface: packets in and out, with a virtio_net_hdr in front when `vnetHdr`. */
export class Tap {
  private watch: NativeFdWatch | undefined
  private closed = false

  private constructor(
    readonly fd: number,
    readonly name: string,
    readonly vnetHdr: boolean,
  ) {}

  /** Opens TAP `name`, creating it if no interface has that name (needs CAP_NET_ADMIN). */
  static open(name: string, options: { vnetHdr?: boolean } = {}): Tap {
    const r = native().openTap(name, { vnetHdr: options.vnetHdr ?? false })
    return new Tap(r.fd, r.name, options.vnetHdr ?? false)
  }

  /**
   * Makes TAP `name` inside the network namespace at `namespacePath` (/var/run/netns/X,
   * /proc/PID/ns/net) without moving this process there: the interface lives in that namespace for
   * as long as the fd (or a copy handed to another process) is open. Needs CAP_SYS_ADMIN.
   */
  static openIn(namespacePath: string, name: string, options: { vnetHdr?: boolean } = {}): Tap {
    const r = native().openTapIn(namespacePath, name, { vnetHdr: options.vnetHdr ?? false })
    return new Tap(r.fd, r.name, options.vnetHdr ?? false)
  }

  /** Adopts a TAP fd this process was handed (TUNGETIFF tells its name and vnet header); closes it on close(). */
  static fromFd(fd: number): Tap {
    const r = native().tapInfo(fd)
    return new Tap(fd, r.name, r.vnetHdr)
  }

  setOffload(flags: number): void {
    native().setTapOffload(this.fd, flags)
  }

  /** One packet into `view`: its length, or -1 when none is waiting. */
  read(view: ArrayBufferView): number {
    return native().readFd(this.fd, view)
  }

  /** One packet from `views` (gathered by the kernel): bytes written, or -1 when the queue is full. */
  write(views: readonly ArrayBufferView[]): number {
    return native().writevFd(this.fd, views)
  }

  /**
   * Calls `onReadable` on the event loop while packets are waiting (level-triggered), or stops
   * watching with `undefined` — what a device does while the guest has no receive buffers, so the
   * loop does not spin on packets it cannot take.
   */
  onReadable(onReadable: (() => void) | undefined): void {
    this.watch?.close()
    this.watch = onReadable ? new (native().FdWatch)(this.fd, () => onReadable(), false) : undefined
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.watch?.close()
    native().closeFd(this.fd)
  }
}

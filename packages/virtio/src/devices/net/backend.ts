import { Tap, TapOffload } from '@vmm/host'

/** Offloads a backend can be told the guest accepts (TUNSETOFFLOAD's meaning). */
export interface NetOffloads {
  csum: boolean
  tso4: boolean
  tso6: boolean
}

/**
 * Where a virtio-net device's frames go: a non-blocking packet fd. With `vnetHdr` each frame in
 * either direction starts with the 12-byte struct virtio_net_hdr of virtio 1.x (num_buffers
 * included; @vmm/kvm's Tap sets TUNSETVNETHDRSZ to 12).
 */
export interface NetBackend {
  readonly vnetHdr: boolean
  /** One frame into `view`: its length, or -1 when none is waiting. */
  read(view: Uint8Array): number
  /** One frame gathered from `views`: bytes written, or -1 when the backend's queue is full. */
  write(views: readonly Uint8Array[]): number
  /** Calls `onReadable` while frames wait; undefined stops watching (the guest has no buffers). */
  watch(onReadable: (() => void) | undefined): void
  setOffloads(offloads: NetOffloads): void
  close(): void
}

/** A Linux TAP interface through @vmm/kvm's Tap. */
export class TapBackend implements NetBackend {
  private readonly tap: Tap

  /** Opens TAP `name`, or adopts `fd`, an open TAP whose interface must be `name`. */
  constructor(name: string, vnetHdr = true, fd?: number) {
    if (fd === undefined) {
      this.tap = Tap.open(name, { vnetHdr })
      return
    }
    this.tap = Tap.fromFd(fd)
    if (this.tap.name !== name)
      throw new Error(`virtio-net: fd ${fd} is TAP ${this.tap.name}, not ${name} as the configuration says`)
  }

  get vnetHdr(): boolean {
    return this.tap.vnetHdr
  }

  get name(): string {
    return this.tap.name
  }

  read(view: Uint8Array): number {
    return this.tap.read(view)
  }

  write(views: readonly Uint8Array[]): number {
    return this.tap.write(views)
  }

  watch(onReadable: (() => void) | undefined): void {
    this.tap.onReadable(onReadable)
  }

  setOffloads(o: NetOffloads): void {
    this.tap.setOffload(
      (o.csum ? TapOffload.Csum : 0) | (o.tso4 ? TapOffload.Tso4 : 0) | (o.tso6 ? TapOffload.Tso6 : 0),
    )
  }

  close(): void {
    this.tap.close()
  }
}

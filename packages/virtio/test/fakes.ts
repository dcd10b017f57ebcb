// Fake backends the device tests and the fuzz properties share.
import type { ConsoleBackend } from '../src/devices/console/backend.js'
import type { NetBackend, NetOffloads } from '../src/devices/net/backend.js'

/** A packet fd in memory: frames queued for the guest, frames the guest sent. */
export class FakeTap implements NetBackend {
  inbound: Uint8Array[] = []
  sent: Uint8Array[] = []
  offloads: NetOffloads | undefined
  watcher: (() => void) | undefined
  full = false
  constructor(readonly vnetHdr: boolean) {}
  read(view: Uint8Array): number {
    const f = this.inbound.shift()
    if (!f) return -1
    // Like a TAP: a frame longer than the buffer is cut to fit.
    const n = Math.min(f.length, view.length)
    view.set(f.subarray(0, n))
    return n
  }
  write(views: readonly Uint8Array[]): number {
    if (this.full) return -1
    const frame = Uint8Array.from(views.flatMap((v) => [...v]))
    this.sent.push(frame)
    return frame.length
  }
  watch(onReadable: (() => void) | undefined): void {
    this.watcher = onReadable
  }
  setOffloads(o: NetOffloads): void {
    this.offloads = o
  }
  close(): void {}
}

export class FakeBackend implements ConsoleBackend {
  readonly terminal = false
  output: number[] = []
  paused = false
  send: (b: Uint8Array) => void = () => {}
  write(bytes: Uint8Array): void {
    this.output.push(...bytes)
  }
  start(onInput: (bytes: Uint8Array) => void): void {
    this.send = onInput
  }
  pauseInput(): void {
    this.paused = true
  }
  resumeInput(): void {
    this.paused = false
  }
  flush(): void {}
  close(): void {}
}

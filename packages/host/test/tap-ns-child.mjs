// Runs inside `unshare -n` (a private network namespace, so no TAP reaches the host's network):
// opens a TAP with @vmm/host from dist, sets offloads, sends a frame (down, then up), reads none.
// Prints a JSON report; any failure goes to stderr with a non-zero exit.
import { execFileSync } from 'node:child_process'
import { Tap, TapOffload } from '../dist/index.js'

const tap = Tap.open('vmmtest%d', { vnetHdr: true })
const report = { name: tap.name, vnetHdr: tap.vnetHdr }
tap.setOffload(TapOffload.Csum | TapOffload.Tso4)
// With the interface down, nothing is queued for us to read.
report.readWhenEmpty = tap.read(new Uint8Array(2048))
// A 12-byte virtio_net_hdr and a minimal Ethernet frame, gathered from two views.
const hdr = new Uint8Array(12)
const frame = new Uint8Array(60).fill(0xff, 0, 6)
// While the interface is down the kernel drops the write with EIO: reported with errno.
try {
  tap.write([hdr, frame])
} catch (e) {
  report.writeWhenDown = { code: e.code, syscall: e.syscall }
}
execFileSync('ip', ['link', 'set', tap.name, 'up'])
report.written = tap.write([hdr, frame])
let badFd
try {
  Tap.open('x'.repeat(16))
} catch (e) {
  badFd = e.constructor.name
}
report.longName = badFd
tap.close()
tap.close()
process.stdout.write(JSON.stringify(report))

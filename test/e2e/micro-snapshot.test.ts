// End to end on the real /dev/kvm: the default guest (Linux + busybox) on the micro board's legacy
// devices (serial console on a Unix socket, i8042, CMOS RTC, boot timer) and virtio-rng on
// virtio-mmio (the other virtio devices cannot save their state yet) boots to its shell, leaves a
// marker in tmpfs, starts a counter in the background, and is paused, snapshotted, disposed and
// restored. The restored shell must answer, the marker be there, the counter go on and /dev/hwrng
// (virtio-rng, its queue restored) answer (issue 15). Boots take minutes on kvm_pvm hosts (every
// guest kernel instruction is emulated); the restore skips that.
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { Machine } from '@vmm/core'
import { Kvm, KvmHypervisor } from '@vmm/kvm'
import { afterAll, describe, expect, it } from 'vitest'
import { defaultGuest } from './console.js'

const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[snapshot end-to-end test skipped] ${kvmUnavailable}`)

const CMDLINE =
  'console=ttyS0 loglevel=4 reboot=k panic=1 acpi=off pci=off nomodule i8042.noaux i8042.nomux ' +
  'i8042.nopnp i8042.dumbkbd swiotlb=noforce cryptomgr.notests noxsave clearcpuid=cx16,popcnt'

/** A client of the serial console's socket: what the guest printed, and a way to wait for text. */
async function attach(socket: string) {
  const client = net.connect(socket)
  await new Promise<void>((ok, fail) => client.once('connect', ok).once('error', fail))
  let text = ''
  const waiters = new Set<() => void>()
  client.on('data', (d: Buffer) => {
    text += d.toString('latin1')
    for (const w of waiters) w()
  })
  return {
    text: () => text,
    send: (s: string) => client.write(s),
    close: () => client.destroy(),
    waitFor(pattern: RegExp, from: number, timeoutMs: number): Promise<string> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = pattern.exec(text.slice(from))
          if (!m) return
          waiters.delete(check)
          clearTimeout(timer)
          resolve(m[0])
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(
            new Error(`no ${pattern} on the console within ${timeoutMs} ms; its end:\n${text.slice(-2000)}`),
          )
        }, timeoutMs)
        waiters.add(check)
        check()
      })
    },
  }
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-e2e-snap-'))
afterAll(() => fs.rmSync(root, { recursive: true, force: true }))

describe.skipIf(kvmUnavailable)(
  'a booted Linux guest, snapshotted and restored (micro board, /dev/kvm)',
  () => {
    it('the restored shell answers, the tmpfs marker is there, the background counter goes on', {
      timeout: 30 * 60_000,
    }, async () => {
      const guest = await defaultGuest()
      const socket = path.join(root, 'console.sock')
      const manifest = {
        plugins: ['@vmm/board-micro', '@vmm/virtio'],
        machine: {
          memory: '256MiB',
          vcpus: 1,
          irqchip: true,
          layout: { mmio: { base: 0xc0000000, size: 0x3ec00000 } },
        },
        components: {
          kernel: { type: 'linux', kernel: guest.vmlinux, initrd: guest.initramfs, cmdline: CMDLINE },
          serial: { type: 'serial', console: 'socket', path: socket, resources: { port: 0x3f8, irq: 4 } },
          i8042: { type: 'i8042', resources: { ports: 0x60, irq: 1 } },
          rtc: { type: 'cmos-rtc', resources: { ports: 0x70, irq: 8 } },
          timer: { type: 'boot-timer', log: false, resources: { page: 0xc0000000 } },
          rng: { type: 'virtio-rng', resources: { regs: 0xc0001000, irq: 5 } },
        },
      }
      const hypervisor = new KvmHypervisor(Kvm.open())
      const a = await Machine.fromObject(manifest, { hypervisor })
      let b: Machine | undefined
      try {
        await a.load()
        await a.start()
        const con = await attach(socket)
        const t0 = Date.now()
        await con.waitFor(/\/ # /, con.text().indexOf('vmm-guest: init reached') + 1, 15 * 60_000)
        console.log(`[e2e snapshot] shell after ${((Date.now() - t0) / 1000).toFixed(1)} s of boot`)
        let mark = con.text().length
        // The counter is written to a new file and renamed, so a reader never finds it empty.
        con.send(
          'echo snapmark-$((6*7)) > /tmp/marker; (i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 1; done) &\n',
        )
        con.send('echo started-$((1+1))\n')
        await con.waitFor(/started-2/, mark, 5 * 60_000)
        await new Promise((r) => setTimeout(r, 2000))
        // For comparison with the restore: how long the shell takes to answer right after a plain
        // pause and resume of the same machine (no snapshot), and when it has not been paused.
        const answerAfter = async (f: () => Promise<void>) => {
          await f()
          const from = con.text().length
          const t = performance.now()
          con.send('echo "ping $((2+3))"\n')
          await con.waitFor(/ping 5/, from, 5 * 60_000)
          return performance.now() - t
        }
        const plainMs = await answerAfter(async () => {})
        const pausedMs = await answerAfter(async () => {
          await a.pause()
          await new Promise((r) => setTimeout(r, 1000))
          await a.resume()
        })
        console.log(
          `[e2e snapshot] shell answer ${plainMs.toFixed(0)} ms unpaused, ${pausedMs.toFixed(0)} ms after a 1 s pause and resume`,
        )
        await a.pause()
        const dir = path.join(root, 'snap')
        const ts = performance.now()
        const header = await a.snapshot(dir)
        const snapshotMs = performance.now() - ts
        con.close()
        await a.dispose()
        const onDisk = fs.statSync(path.join(dir, 'memory')).blocks * 512

        const tr = performance.now()
        b = await Machine.restore(dir, { hypervisor })
        await b.resume()
        const restoreMs = performance.now() - tr
        const con2 = await attach(socket)
        mark = con2.text().length
        const tq = performance.now()
        con2.send('echo "answer $(cat /tmp/marker) $(cat /tmp/count)"\n')
        const first = await con2.waitFor(/answer snapmark-42 (\d+)/, mark, 5 * 60_000)
        const answerMs = performance.now() - tq
        mark = con2.text().length
        await new Promise((r) => setTimeout(r, 5000))
        const ta = performance.now()
        con2.send(
          'echo "again $(cat /tmp/count) rng $(head -c 16 /dev/hwrng | od -An -tx1 | tr -d \' \\n\')"\n',
        )
        const second = await con2.waitFor(/again (\d+) rng ([0-9a-f]{32})/, mark, 5 * 60_000)
        const againMs = performance.now() - ta
        const n1 = Number(/(\d+)$/.exec(first)![1])
        const n2 = Number(/again (\d+)/.exec(second)![1])
        console.log(
          `[e2e snapshot] state ${header.state.bytes} B, memory file ${header.memory.bytes} B (${onDisk} B on disk); ` +
            `snapshot ${snapshotMs.toFixed(0)} ms, restore+resume ${restoreMs.toFixed(0)} ms, first answer ${answerMs.toFixed(0)} ms later, the next ${againMs.toFixed(0)} ms; ` +
            `counter ${n1} then ${n2}`,
        )
        expect(n2).toBeGreaterThan(n1)
        con2.close()
      } finally {
        await b?.dispose()
        await a.dispose()
        hypervisor.dispose()
      }
    })
  },
)

// End to end, a reset in place on the micro board (QMP system_reset is Machine.reset): the machine
// of examples/micro.yaml runs in this process on the real /dev/kvm with the default guest, its
// serial console on a Unix socket. Once the guest's shell is up and has run a command, the test
// resets the machine, presses a key as it does (the UART
// holds it; it must not interrupt the new boot before the guest set up its PICs), waits for the
// shell again, checks the guest is a fresh boot (a file the first boot wrote in its RAM-backed
// root is gone), and powers off through the i8042's Power key. The standard board's
// reset after a hot-plug is in standard-hotplug.test.ts.
// On kvm_pvm hosts every guest kernel instruction is emulated (docs/kvm-pvm-hosts.md): minutes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ComponentRegistry, Machine, registerBuiltins } from '@vmm/core'
import { linkDefaultGuest } from '@vmm/image'
import { Kvm, KvmHypervisor } from '@vmm/kvm'
import { describe, expect, it } from 'vitest'
import { defaultGuest, socketConsole } from './console.js'
import { GuestShell, root } from './guest-harness.mjs'

const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[micro-board reset end-to-end test skipped] ${kvmUnavailable}`)

const BOOT_LIMIT_MS = 15 * 60_000
const COMMAND_LIMIT_MS = 5 * 60_000

describe.skipIf(kvmUnavailable)('Machine.reset on examples/micro.yaml, in-process on /dev/kvm', () => {
  it('resets a running guest in place, which boots again to its shell and then powers off', {
    timeout: 45 * 60_000,
  }, async () => {
    const guest = await defaultGuest()
    linkDefaultGuest(guest, join(root, 'examples/.guest'))
    const dir = mkdtempSync(join(tmpdir(), 'vmm-micro-reset-e2e-'))
    const socket = join(dir, 'console.sock')
    const manifest = join(dir, 'micro.yaml')
    writeFileSync(
      manifest,
      [
        `include: ${JSON.stringify(join(root, 'examples/micro.yaml'))}`,
        'components:',
        `  serial: { console: socket, path: ${JSON.stringify(socket)} }`,
        '',
      ].join('\n'),
    )
    const hypervisor = new KvmHypervisor(Kvm.open())
    const m = await Machine.fromFile(manifest, {
      hypervisor,
      registry: registerBuiltins(new ComponentRegistry()),
    })
    const done = m.run()
    try {
      const { con, sock } = await socketConsole(socket, done)
      const sh = new GuestShell(con, (text: string) => sock.write(text))
      await con.waitFor(/vmm-guest: init reached/, 0, BOOT_LIMIT_MS)
      await con.waitFor(/# (.\[6n)?$/, con.text().indexOf('vmm-guest: init reached'), COMMAND_LIMIT_MS)
      const first = await sh.check('echo first-boot > /tmp/marker; cat /proc/uptime', COMMAND_LIMIT_MS)
      const uptime1 = Number(/^(\d+\.\d+) /m.exec(first)![1])

      const bootFrom = con.text().length
      await m.reset()
      sock.write('\r') // a key pressed as the machine resets
      await con.waitFor(/vmm-guest: init reached/, bootFrom, BOOT_LIMIT_MS)
      await con.waitFor(
        /# (.\[6n)?$/,
        con.text().indexOf('vmm-guest: init reached', bootFrom),
        COMMAND_LIMIT_MS,
      )
      ;(sh as unknown as { quiet: boolean }).quiet = false // a fresh shell: echo is on again
      const second = await sh.check(
        'cat /tmp/marker 2>/dev/null || echo "no marker"; cat /proc/uptime',
        COMMAND_LIMIT_MS,
      )
      const uptime2 = Number(/^(\d+\.\d+) /m.exec(second)![1])
      console.log(`[e2e micro reset] uptime ${uptime1} s before the reset, ${uptime2} s at the second shell`)
      expect(second).toContain('no marker')
      expect(con.text().slice(bootFrom)).not.toMatch(/Kernel panic|Oops|unexpected #/)

      expect(m.requestShutdown()).toBe('i8042')
      const result = await Promise.race([
        done,
        new Promise<never>((_, reject) =>
          setTimeout(
            () => reject(new Error(`no power-off:\n${con.text().slice(-3000)}`)),
            COMMAND_LIMIT_MS,
          ).unref(),
        ),
      ])
      expect(result).toMatchObject({ status: 'guest-poweroff', code: 0 })
      sock.destroy()
    } finally {
      await m.dispose()
      hypervisor.dispose()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

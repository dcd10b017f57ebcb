// End to end, the VM Generation ID on the standard board (issue 15), in this process on the real
// /dev/kvm with the default guest (Linux 6.1 with CONFIG_VMGENID), the machine of
// examples/standard.yaml with its serial console on a Unix socket and QMP on another. Once the
// guest's shell is up, the test
//  - finds the device bound to Linux's vmgenid driver (/sys/bus/acpi/drivers/vmgenid/VMGENCTR:00),
//  - reads the ADDR method out of the DSDT the guest sees (/sys/firmware/acpi/tables/DSDT), then
//    the 16 bytes at that address through /dev/mem, and checks they are the ID QMP's
//    query-vm-generation-id names (over a real QMP connection),
//  - gives the machine a new ID through the library (VmGenId.newGeneration, what a restore does):
//    the GED interrupt (ACPI:Ged in /proc/interrupts) fires, the driver reads the new bytes and
//    reseeds the CRNG ("crng reseeded due to virtual machine fork" in dmesg: random.c's
//    add_vmfork_randomness), and the bytes the guest reads are QMP's new answer,
//  - snapshots the machine and runs two clones of it at once with `vmm restore --qmp`: each has
//    an ID of its own, neither the snapshot's; each guest reads its clone's ID, got the GED
//    interrupt and reseeded once more, and the two clones' /dev/urandom differ.
// On kvm_pvm hosts every guest kernel instruction is emulated (docs/kvm-pvm-hosts.md): minutes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { guidBytes, type VmGenId } from '@vmm/board-standard'
import { Controller, QmpClient, QmpServer } from '@vmm/control'
import { ComponentRegistry, Machine, registerBuiltins } from '@vmm/core'
import { linkDefaultGuest } from '@vmm/image'
import { Kvm, KvmHypervisor } from '@vmm/kvm'
import { afterAll, describe, expect, it } from 'vitest'
import { defaultGuest } from './console.js'
import { GuestShell, root, watchConsole } from './guest-harness.mjs'
import { firstAnswer, startRestore } from './snapshot-harness.mjs'

const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[vmgenid end-to-end test skipped] ${kvmUnavailable}`)

const BOOT_LIMIT_MS = 15 * 60_000
const COMMAND_LIMIT_MS = 5 * 60_000
const log = (text: string) => console.log(`[e2e vmgenid] ${text}`)
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
const cleanups: (() => unknown)[] = []
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** The serial console's socket, connected once the serial component listens, as a GuestShell. */
async function attach(socketPath: string, done: Promise<{ code: number }>) {
  let sock: Socket | undefined
  for (let i = 0; !sock; i++) {
    const attempt = connect(socketPath)
    try {
      await new Promise<void>((resolve, reject) => attempt.once('connect', resolve).once('error', reject))
      sock = attempt
    } catch (e) {
      if (i > 50) throw e
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  // watchConsole wants a child process; the socket is its stdout, the run's end its exit.
  const con = watchConsole({
    stdout: sock,
    stderr: new PassThrough(),
    on: (event: string, f: (code: number, signal: null) => void) => {
      if (event === 'exit') void done.then((r) => f(r.code, null))
    },
  })
  return { sock, con, sh: new GuestShell(con, (text: string) => sock!.write(text)) }
}

/** What the guest sees of the generation ID: the address its ADDR method returns, and the 16 bytes there. */
async function guestView(sh: GuestShell) {
  // Method (ADDR, 0) { Return (Package (2) { DWord low, DWord high }) } in AML:
  // "ADDR" 00 | A4 (Return) 12 (Package) 0C (PkgLength) 02 (two elements) 0C low 0C high.
  const dsdt = await sh.check(
    `hexdump -v -e '1/1 "%02x"' /sys/firmware/acpi/tables/DSDT | grep -o '4144445200a4120c020c.\\{8\\}0c.\\{8\\}'`,
    COMMAND_LIMIT_MS,
  )
  const m = /4144445200a4120c020c([0-9a-f]{8})0c([0-9a-f]{8})/.exec(dsdt)
  if (!m) throw new Error(`no ADDR method in the guest's DSDT:\n${dsdt}`)
  const le = (h: string) => Buffer.from(h, 'hex').readUInt32LE(0)
  const address = le(m[1]!) + le(m[2]!) * 2 ** 32
  const out = await sh.check(
    `dd if=/dev/mem bs=8 skip=${address / 8} count=2 2>/dev/null | hexdump -v -e '16/1 "%02x"'; echo`,
    COMMAND_LIMIT_MS,
  )
  const bytes = /^([0-9a-f]{32})$/m.exec(out)?.[1]
  if (!bytes) throw new Error(`no 16 bytes read from /dev/mem at ${address}:\n${out}`)
  return { address, bytes }
}

/** The GED's interrupt count (the SCI line, "ACPI:Ged"), and how often the CRNG was reseeded for a VM fork. */
async function notifications(sh: GuestShell) {
  const out = await sh.check(
    'grep "ACPI:Ged" /proc/interrupts; echo "reseeds: $(dmesg | grep -c "crng reseeded due to virtual machine fork")"',
    COMMAND_LIMIT_MS,
  )
  const line = /^\s*\d+:((?:\s+\d+)+)\s.*ACPI:Ged/m.exec(out)
  if (!line) throw new Error(`no ACPI:Ged line in /proc/interrupts:\n${out}`)
  const ged = line[1]!
    .trim()
    .split(/\s+/)
    .map(Number)
    .reduce((a, b) => a + b, 0)
  return { ged, reseeds: Number(/reseeds: (\d+)/.exec(out)![1]) }
}

describe.skipIf(kvmUnavailable)('VM Generation ID on examples/standard.yaml, in-process on /dev/kvm', () => {
  it('the guest binds vmgenid, reads the ID QMP reports, reseeds on a new one; two clones of its snapshot get IDs of their own', {
    timeout: 45 * 60_000,
  }, async () => {
    const guest = await defaultGuest()
    linkDefaultGuest(guest, join(root, 'examples/.guest'))
    const dir = mkdtempSync(join(tmpdir(), 'vmm-vmgenid-e2e-'))
    const socket = join(dir, 'console.sock')
    const manifest = join(dir, 'vmgenid.yaml')
    writeFileSync(
      manifest,
      [
        `include: ${JSON.stringify(join(root, 'examples/standard.yaml'))}`,
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
    const controller = new Controller(m)
    const qmpServer = await QmpServer.listen(join(dir, 'qmp.sock'), controller)
    const qmp = await QmpClient.connect(join(dir, 'qmp.sock'))
    const done = m.run()
    try {
      const { sock, con, sh } = await attach(socket, done)
      await con.waitFor(/vmm-guest: init reached/, 0, BOOT_LIMIT_MS)
      await con.waitFor(/# (.\[6n)?$/, con.text().indexOf('vmm-guest: init reached'), COMMAND_LIMIT_MS)

      const bound = await sh.check('ls /sys/bus/acpi/drivers/vmgenid', COMMAND_LIMIT_MS)
      log(`bound to the vmgenid driver: ${bound.trim()}`)
      expect(bound.trim().split(/\s+/)).toContain('VMGENCTR:00')

      const vmgenid = m.component<VmGenId>('vmgenid')
      const first = await guestView(sh)
      const answer = (await qmp.execute('query-vm-generation-id')) as { guid: string }
      log(`ADDR ${first.address.toString(16)}: ${first.bytes}; query-vm-generation-id: ${answer.guid}`)
      expect(first.address).toBe(vmgenid.address)
      expect(first.bytes).toBe(hex(guidBytes(answer.guid)))

      // The CRNG reseeds only once it is ready (random.c: crng_ready()); virtio-rng makes that early.
      await sh.check(
        'for i in $(seq 1 120); do dmesg | grep -q "crng init done" && break; sleep 1; done; dmesg | grep "crng init done"',
        COMMAND_LIMIT_MS,
      )
      const before = await notifications(sh)
      const next = vmgenid.newGeneration()
      log(`new generation ID ${next} (was ${answer.guid}); GED interrupts so far ${before.ged}`)
      expect(next).not.toBe(answer.guid)
      await sh.check(
        'for i in $(seq 1 120); do dmesg | grep -q "crng reseeded due to virtual machine fork" && break; sleep 1; done',
        COMMAND_LIMIT_MS,
      )
      const after = await notifications(sh)
      const second = await guestView(sh)
      const answer2 = (await qmp.execute('query-vm-generation-id')) as { guid: string }
      log(`after: ${second.bytes}, GED interrupts ${after.ged}, fork reseeds ${after.reseeds}`)
      expect(answer2.guid).toBe(next)
      expect(second.bytes).toBe(hex(guidBytes(next)))
      expect(after.ged).toBeGreaterThan(before.ged)
      expect(after.reseeds).toBe(before.reseeds + 1)

      // --- a snapshot of this machine, and two clones of it running at once (`vmm restore`) ---
      await m.pause()
      const snap = join(dir, 'snap')
      await m.snapshot(snap)
      const atSnapshot = { guid: vmgenid.guid, ...after }
      await m.stop()
      const clones = ['a', 'b'].map((name) => {
        const qmpPath = join(dir, `${name}.qmp`)
        // The console back to stdio: the snapshot's socket path is this process's.
        const p = startRestore(snap, ['--qmp', qmpPath, '--set', 'serial.console=stdio'], root)
        cleanups.push(() => {
          if (p.child.exitCode === null) p.child.kill('SIGINT')
          return p.con.exitWithin(60_000).catch(() => {})
        })
        return { name, p, qmpPath }
      })
      const seen = await Promise.all(
        clones.map(async ({ name, p, qmpPath }) => {
          const ms = await firstAnswer(p, p.spawnedAt, `hello-${name}`)
          const csh = new GuestShell(p.con, p.write)
          csh.quiet = true // the terminal's echo is guest state: off since the boot
          const client = await QmpClient.connect(qmpPath)
          cleanups.push(() => client.close())
          const { guid } = (await client.execute('query-vm-generation-id')) as { guid: string }
          await csh.check(
            `for i in $(seq 1 120); do [ $(dmesg | grep -c "crng reseeded due to virtual machine fork") -gt ${atSnapshot.reseeds} ] && break; sleep 1; done`,
            COMMAND_LIMIT_MS,
          )
          const view = await guestView(csh)
          const n = await notifications(csh)
          const urandom = (
            await csh.check(`head -c 16 /dev/urandom | hexdump -v -e '16/1 "%02x"'; echo`)
          ).trim()
          log(
            `clone ${name}: answered ${ms.toFixed(0)} ms after spawn; ID ${guid}, guest reads ${view.bytes}; GED interrupts ${n.ged}, fork reseeds ${n.reseeds}; urandom ${urandom}`,
          )
          return { name, p, client, guid, view, n, urandom }
        }),
      )
      for (const c of seen) {
        expect(c.guid).not.toBe(atSnapshot.guid)
        expect(c.view.bytes).toBe(hex(guidBytes(c.guid)))
        expect(c.n.ged).toBeGreaterThan(atSnapshot.ged)
        expect(c.n.reseeds).toBe(atSnapshot.reseeds + 1)
      }
      const [a, b] = seen as [(typeof seen)[0], (typeof seen)[0]]
      expect(a.guid).not.toBe(b.guid)
      expect(a.urandom).not.toBe(b.urandom)

      // Clone a powers off through the ACPI power button (QMP system_powerdown); b is stopped.
      await a.client.execute('system_powerdown')
      const exit = (await a.p.con.exitWithin(3 * 60_000)) as { code: number | null }
      expect(exit.code, a.p.con.text().slice(-2000)).toBe(0)
      b.p.child.kill('SIGINT')
      await b.p.con.exitWithin(60_000)
      expect((await done).status).toBe('stopped')
      expect(con.text()).not.toContain('Kernel panic')
      sock.destroy()
    } finally {
      await qmp.close()
      await qmpServer.close()
      controller.close()
      await m.dispose()
      hypervisor.dispose()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

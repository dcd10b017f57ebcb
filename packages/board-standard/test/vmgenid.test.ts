// The VM Generation ID: the ID's two forms, the AML of its ACPI device byte for byte and as iasl
// reads it inside the DSDT, and the component on the test hypervisor: the 16 bytes in guest RAM,
// a new ID raising the GED event (and waiting while paused), a restore replacing the saved ID, and
// the manifest and state errors.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Machine } from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import { describe, expect, it } from 'vitest'
import {
  type Acpi,
  type AcpiMachine,
  buildAcpi,
  GED_VMGENID,
  guidBytes,
  guidText,
  randomGenerationId,
  type VmGenId,
  vmgenidAml,
} from '../src/index.js'
import { manifest, PM_PORT, registry } from './board-machine.js'

const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0))
// QEMU's docs/specs/vmgenid.txt example GUID, and the bytes it stands for in guest memory.
const GUID = '324e6eaf-d1d1-4bf6-bf41-b9bb6c91fb87'
const GUID_BYTES = [
  0xaf, 0x6e, 0x4e, 0x32, 0xd1, 0xd1, 0xf6, 0x4b, 0xbf, 0x41, 0xb9, 0xbb, 0x6c, 0x91, 0xfb, 0x87,
]

describe('generation ID text and bytes', () => {
  it('stores the GUID little-endian in its first three fields, as QEMU does', () => {
    expect([...guidBytes(GUID)]).toEqual(GUID_BYTES)
    expect(guidText(Uint8Array.from(GUID_BYTES))).toBe(GUID)
    expect(guidText(guidBytes(GUID.toUpperCase()))).toBe(GUID)
  })

  it('refuses text that is not a GUID and IDs that are not 16 bytes', () => {
    expect(() => guidBytes('324e6eaf-d1d1-4bf6-bf41-b9bb6c91fb8')).toThrow(/not a GUID/)
    expect(() => guidBytes('324e6eaf-d1d1-4bf6-bf41-b9bb6c91fbzz')).toThrow(/not a GUID/)
    expect(() => guidText(new Uint8Array(15))).toThrow(/16 bytes, not 15/)
  })

  it('draws 128 random bits each time', () => {
    const a = randomGenerationId()
    const b = randomGenerationId()
    expect(a).toHaveLength(16)
    expect(guidText(a)).not.toBe(guidText(b))
  })
})

describe('the ACPI device', () => {
  it('is Device(VGEN) with _HID, _CID, _DDN and ADDR returning Package(2) {low, high} as DWORDs', () => {
    const name = (n: string, s: string) => [0x08, ...ascii(n), 0x0d, ...ascii(s), 0x00]
    // Method(ADDR, 0, NotSerialized) { Return (Package (2) { DWord low, DWord high }) }
    const pkg = [0x12, 0x0c, 0x02, 0x0c, 0x00, 0xf0, 0x0f, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x00]
    const method = [0x14, 1 + 4 + 1 + 1 + pkg.length, ...ascii('ADDR'), 0x00, 0xa4, ...pkg]
    const body = [
      ...ascii('VGEN'),
      ...name('_HID', 'VMGENCTR'),
      ...name('_CID', 'VM_Gen_Counter'),
      ...name('_DDN', 'VM_Gen_Counter'),
      ...method,
    ]
    // ExtOpPrefix DeviceOp, then a two-byte PkgLength (the body is over 63 bytes).
    const total = body.length + 2
    expect([...vmgenidAml(0xff000)]).toEqual([0x5b, 0x82, 0x40 | (total & 0xf), total >> 4, ...body])
  })

  it('splits an address above 4 GiB into its two halves and refuses one that is not 8-byte aligned (R1a)', () => {
    const a = vmgenidAml(0x1_2345_6788)
    const at = a.length - 10
    expect([...a.subarray(at)]).toEqual([0x0c, 0x88, 0x67, 0x45, 0x23, 0x0c, 0x01, 0x00, 0x00, 0x00])
    expect(() => vmgenidAml(0xff004)).toThrow(/8-byte aligned/)
  })

  const iasl = spawnSync('iasl', ['-v'], { encoding: 'utf8' })
  it.skipIf(iasl.error)(
    'sits in the DSDT, and the GED _EVT notifies it with 0x80 on its event bit (iasl -d)',
    () => {
      const m: AcpiMachine = {
        apicIds: [0],
        ioapic: { id: 1, address: 0xfec00000 },
        serial: [],
        pmPort: PM_PORT,
        i8042: false,
        sci: 9,
        devices: [
          {
            aml: vmgenidAml(0xff000),
            event: { bit: GED_VMGENID, notify: '\\_SB.VGEN', value: 0x80 },
          },
        ],
      }
      const dir = mkdtempSync(join(tmpdir(), 'vmm-vmgenid-'))
      writeFileSync(join(dir, 'DSDT.dat'), buildAcpi(m, 0xe0000).tables.DSDT!.bytes)
      const r = spawnSync('iasl', ['-d', 'DSDT.dat'], { encoding: 'utf8', cwd: dir })
      expect(r.status, r.stderr).toBe(0)
      const dsl = readFileSync(join(dir, 'DSDT.dsl'), 'utf8')
      expect(dsl).not.toMatch(/Invalid|Incorrect|\*\*\*\*\*|Unknown/)
      expect(dsl).toMatch(
        /Device \(VGEN\)\s*\{\s*Name \(_HID, "VMGENCTR"\)[^\n]*\n\s*Name \(_CID, "VM_Gen_Counter"\)[^\n]*\n\s*Name \(_DDN, "VM_Gen_Counter"\)[^\n]*\n\s*Method \(ADDR, 0, NotSerialized\)\s*\{\s*Return \(Package \(0x02\)\s*\{\s*0x000FF000,\s*0x00000000\s*\}\)/,
      )
      expect(dsl).toMatch(/If \(\(Local0 & 0x04\)\)\s*\{\s*Notify \(\\_SB\.VGEN, 0x80\)/)
    },
  )
})

const ADDRESS = 0xff000

/** The standard board on the test hypervisor with a vmgenid (`vmgenid` overrides its node). */
async function board(vmgenid: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  const hv = new TestHypervisor()
  const dir = mkdtempSync(join(tmpdir(), 'vmm-vmgenid-'))
  writeFileSync(join(dir, 'spin.bin'), Uint8Array.of(0xeb, 0xfe))
  const base = manifest('', 'stacked', join(dir, 'spin.bin'))
  const m = await Machine.fromObject(
    {
      ...base,
      components: { ...base.components, vmgenid: { type: 'vmgenid', acpi: 'acpi', ...vmgenid }, ...extra },
    },
    { hypervisor: hv, registry: registry() },
  )
  return { m, hv }
}

const idAt = (m: Machine, address = ADDRESS) => {
  const b = new Uint8Array(16)
  m.memory.read(address as never, b)
  return [...b]
}

/** What the DSDT's _EVT does first: read (and so clear) the GED event byte at pm + 3. */
const readEvents = (m: Machine) => {
  const d = new Uint8Array(1)
  m.pioBus.lookup(PM_PORT + 3)!.device.read(3, d)
  return d[0]
}

describe('the vmgenid component (test hypervisor)', () => {
  it('puts its ID in guest RAM at load and its device in the DSDT the acpi component builds', async () => {
    const { m } = await board({ guid: GUID })
    try {
      await m.load()
      const v = m.component<VmGenId>('vmgenid')
      expect(v.guid).toBe(GUID)
      expect(v.address).toBe(ADDRESS)
      expect(idAt(m)).toEqual(GUID_BYTES)
      const dsdt = m.component<Acpi>('acpi').blob!.tables.DSDT!
      const device = vmgenidAml(ADDRESS)
      const text = Buffer.from(dsdt.bytes)
      expect(text.indexOf(Buffer.from(device))).toBeGreaterThan(36)
    } finally {
      await m.dispose()
    }
  })

  it('writes a new ID and raises the GED event on the SCI line; the event byte says 0x04', async () => {
    const { m, hv } = await board()
    const v = m.component<VmGenId>('vmgenid')
    try {
      await m.load()
      await m.start()
      const before = v.guid
      const events: unknown[] = []
      m.on((e) => {
        if (e.type === 'device') events.push(e)
      })
      expect(hv.vms[0]!.log.irqLevels.get(9)).toBeUndefined()
      const guid = v.newGeneration()
      expect(guid).not.toBe(before)
      expect(guid).toBe(v.guid)
      expect(idAt(m)).toEqual([...guidBytes(guid)])
      expect(hv.vms[0]!.log.irqLevels.get(9)).toBe(true)
      expect(readEvents(m)).toBe(GED_VMGENID)
      expect(hv.vms[0]!.log.irqLevels.get(9)).toBe(false)
      expect(events).toEqual([
        expect.objectContaining({ source: 'vmgenid', name: 'vm-generation-id', data: { guid } }),
      ])
      // A given ID is taken as it is; a wrong size is refused.
      v.newGeneration(Uint8Array.from(GUID_BYTES))
      expect(v.guid).toBe(GUID)
      expect(() => v.newGeneration(new Uint8Array(8))).toThrow(/16 bytes, not 8/)
      await m.stop()
    } finally {
      await m.dispose()
    }
    // Guest RAM is gone with the machine: nothing is written to it any more.
    expect(() => v.newGeneration()).toThrow(/vmgenid: the machine is disposed/)
  })

  it('on a paused machine, writes and notifies at resume, and writes the ID again after a reset', async () => {
    const { m, hv } = await board({ guid: GUID })
    try {
      await m.load()
      await m.start()
      await m.pause()
      const v = m.component<VmGenId>('vmgenid')
      const guid = v.newGeneration()
      expect(idAt(m)).toEqual(GUID_BYTES) // nothing touched while paused
      expect(hv.vms[0]!.log.irqLevels.get(9)).toBeUndefined()
      await m.resume()
      expect(idAt(m)).toEqual([...guidBytes(guid)])
      expect(readEvents(m)).toBe(GED_VMGENID)
      // A reset reloads RAM with what load wrote (the first ID); the current one is put back.
      await m.reset()
      expect(v.guid).toBe(guid)
      expect(idAt(m)).toEqual([...guidBytes(guid)])
      await m.stop()
    } finally {
      await m.dispose()
    }
  })

  it('saves the ID; a restore replaces it with a random one at once and notifies at the first resume', async () => {
    const { m: a } = await board({ guid: GUID })
    const { m: b, hv } = await board({ guid: GUID })
    try {
      await a.load()
      const saved = structuredClone(await a.component<VmGenId>('vmgenid').saveState())
      expect(saved).toEqual({ guid: GUID_BYTES })
      // A snapshot taken before the guest read a pending vmgenid event keeps it (acpi's state).
      const acpi = b.component<Acpi>('acpi')
      acpi.restoreState({ ged: GED_VMGENID, hotplug: { up: 0, down: 0 } })
      expect(acpi.pm.pendingGedEvents).toBe(GED_VMGENID)
      expect(readEvents(b)).toBe(GED_VMGENID)
      const v = b.component<VmGenId>('vmgenid')
      // As Machine.restore drives it: restoreState, start, pause (all before a vCPU runs), resume.
      v.restoreState(saved)
      expect(v.snapshotGuid).toBe(GUID)
      expect(v.guid).not.toBe(GUID)
      expect(idAt(b)).toEqual([...v.generationId])
      v.start()
      v.pause()
      expect(hv.vms[0]!.log.irqLevels.get(9)).toBe(false) // lowered by the read above, not raised again
      v.resume()
      expect(hv.vms[0]!.log.irqLevels.get(9)).toBe(true)
      expect(b.component<Acpi>('acpi').pm.pendingGedEvents).toBe(GED_VMGENID)
      // Saved state is untrusted input.
      expect(() => v.restoreState({ guid: [1, 2, 3] })).toThrow(
        /vmgenid: saved state guid: must be a list of exactly 16 bytes/,
      )
      expect(() => v.restoreState({ guid: GUID_BYTES, extra: 1 })).toThrow(/extra/)
    } finally {
      await a.dispose()
      await b.dispose()
    }
  })

  it('refuses an address that is not 8-byte aligned, outside the legacy area, or under the ACPI tables', async () => {
    await expect(board({ address: 0xff004 })).rejects.toThrow(
      /\/components\/vmgenid\/address.*multiple of 8/s,
    )
    await expect(board({ address: 0x100000 })).rejects.toThrow(/\/components\/vmgenid\/address/)
    await expect(board({ guid: 'nope' })).rejects.toThrow(/\/components\/vmgenid\/guid/)
    const { m } = await board({ address: 0xe0100 })
    try {
      await expect(m.load()).rejects.toThrow(
        /ACPI tables \[0xe0000, 0x[0-9a-f]+\) overlap what vmgenid keeps at \[0xe0100, 0xe0110\)/,
      )
    } finally {
      await m.dispose()
    }
  })

  it('refuses a second generation ID device and a hot-plugged one', async () => {
    await expect(
      board({}, { vmgenid2: { type: 'vmgenid', acpi: 'acpi', address: 0xfe000 } }),
    ).rejects.toThrow(/vmgenid2: GED event bit 4 is not free: vmgenid has it/)
    const { m } = await board()
    try {
      await m.load()
      await m.start()
      await expect(m.hotplug('late', { type: 'vmgenid', acpi: 'acpi', address: 0xfe000 })).rejects.toThrow(
        /late: the ACPI tables of acpi are already in guest memory/,
      )
      expect(() => m.component('late')).toThrow(/no component/)
      await m.stop()
    } finally {
      await m.dispose()
    }
  })
})

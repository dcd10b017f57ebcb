// The VM Generation ID (Microsoft, "Virtual Machine Generation ID", 2012): 16 bytes in guest
// memory that change whenever the machine starts again from a copy of itself (a snapshot restored,
// a clone), and an ACPI notification that tells the guest so. Linux's driver
// (drivers/virt/vmgenid.c) reads the ID at probe and mixes it into the RNG; at Notify 0x80 it
// reads it again and, when it differs, calls add_vmfork_randomness, which reseeds the CRNG at once
// ("crng reseeded due to virtual machine fork"), so clones stop sharing their random streams.
//
// Where the 16 bytes live (R1a-R1e of QEMU's docs/specs/vmgenid.txt, from the specification): in
// guest RAM, 8-byte aligned, in the legacy BIOS area below 1 MiB that the linux component's e820
// map leaves out (neither AddressRangeMemory nor AddressRangeACPI, R1d), so the OS neither uses
// the page (R1c) nor maps it uncached (R1e: Linux maps it with memremap(MEMREMAP_WB)); the acpi
// component refuses tables laid over it. Linux scans 0xF0000-0xFFFFF for the MP table's "_MP_"
// and the RSDP's "RSD PTR " signatures at 16-byte boundaries; random bytes that happen to spell
// one (and then pass its checksum) are a 2^-40 chance at worst, and the RSDP is handed over directly.
import {
  type Component,
  type GuestMemory,
  guestAddress,
  type LoadContext,
  type MachineControl,
  SavedState,
} from '@vmm/core'
import { GED_VMGENID } from '../acpi/machine.js'
import { VMGENID_NOTIFY, VMGENID_PATH, vmgenidAml } from './aml.js'
import { guidBytes, guidText, randomGenerationId, VMGENID_SIZE } from './guid.js'

export interface VmGenIdConfig {
  /** The acpi component whose DSDT describes the device and whose GED notifies it. */
  acpi: string
  /** Guest physical address of the 16 bytes. */
  address: number
  /** The first ID: "auto" (random) or a GUID. */
  guid: string
}

/** What the device needs of the acpi component (Acpi.describeDevice). */
export interface AcpiDeviceHost {
  describeDevice(
    owner: string,
    device: {
      aml: Uint8Array
      event: { bit: number; notify: string; value: number }
      reserved: { base: number; size: number }
    },
  ): () => void
}

export class VmGenId implements Component {
  private current: Uint8Array
  /** The ID the snapshot held, on a restored machine. */
  private restoredFrom: Uint8Array | undefined
  private readonly notify: () => void
  private started = false
  private paused = false
  /** A new ID the guest has not been told about yet (set while paused, or by a restore). */
  private notifyPending = false
  /** Set by dispose: guest RAM may be unmapped, so nothing is written any more. */
  private disposed = false

  constructor(
    readonly id: string,
    private readonly config: VmGenIdConfig,
    private readonly memory: GuestMemory,
    private readonly machine: MachineControl,
    acpi: AcpiDeviceHost,
  ) {
    this.current = config.guid === 'auto' ? randomGenerationId() : guidBytes(config.guid)
    this.notify = acpi.describeDevice(id, {
      aml: vmgenidAml(config.address),
      event: { bit: GED_VMGENID, notify: VMGENID_PATH, value: VMGENID_NOTIFY },
      reserved: { base: config.address, size: VMGENID_SIZE },
    })
  }

  /** Guest physical address of the ID (what the device's ADDR method returns). */
  get address(): number {
    return this.config.address
  }

  /** The current ID, as the guest reads it. */
  get generationId(): Uint8Array {
    return this.current.slice()
  }

  /** The current ID as GUID text (QMP query-vm-generation-id). */
  get guid(): string {
    return guidText(this.current)
  }

  /** On a machine restored from a snapshot: the ID the snapshot held (the restore replaced it). */
  get snapshotGuid(): string | undefined {
    return this.restoredFrom && guidText(this.restoredFrom)
  }

  /**
   * Gives the machine a new generation ID (`id`, else 128 random bits) and tells the guest: the
   * 16 bytes are written and the GED raises the device's event, whose _EVT branch sends
   * Notify(\_SB.VGEN, 0x80). On a paused machine both wait for resume. Returns the new GUID text.
   */
  newGeneration(id: Uint8Array = randomGenerationId()): string {
    if (this.disposed) throw new Error(`${this.id}: the machine is disposed; its generation ID cannot change`)
    if (id.length !== VMGENID_SIZE)
      throw new RangeError(`${this.id}: a generation ID has 16 bytes, not ${id.length}`)
    this.current = id.slice()
    this.machine.report(this.id, 'vm-generation-id', { guid: this.guid })
    if (this.paused) this.notifyPending = true
    else {
      this.write(this.memory)
      if (this.started) this.notify()
    }
    return this.guid
  }

  private write(memory: GuestMemory): void {
    memory.write(guestAddress(this.config.address), this.current)
  }

  // Through the load context, so the bytes are part of what a reset puts back.
  load({ memory }: LoadContext): void {
    this.write(memory)
  }

  start(): void {
    this.started = true
  }

  pause(): void {
    this.paused = true
  }

  // Written again at every resume: a reset in place reloads guest RAM with the boot-time bytes,
  // and the ID the machine has now is the one the guest must find.
  resume(): void {
    this.paused = false
    this.write(this.memory)
    if (this.notifyPending) {
      this.notifyPending = false
      this.notify()
    }
  }

  dispose(): void {
    this.disposed = true
  }

  // Snapshottable. A snapshot keeps the ID the guest had; a restore (every clone of it) gets a new
  // one, written before any vCPU runs, and the guest is notified at the first resume: the same
  // thing a VMM does when "a virtual machine is ... restored from a snapshot" in the spec's words.
  quiesce(): void {}

  saveState(): { guid: number[] } {
    return { guid: [...this.current] }
  }

  restoreState(state: unknown): void {
    const s = new SavedState(this.id, state).only('guid')
    this.restoredFrom = Uint8Array.from(s.bytes('guid', VMGENID_SIZE, VMGENID_SIZE))
    this.current = randomGenerationId()
    this.write(this.memory)
    this.notifyPending = true
    this.machine.report(this.id, 'vm-generation-id', { guid: this.guid, restoredFrom: this.snapshotGuid })
  }
}

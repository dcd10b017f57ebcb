// The VM Generation ID's ACPI device, as AML for the DSDT's \_SB scope. What Microsoft's
// "Virtual Machine Generation ID" (August 2012, "How to implement virtual machine generation ID
// support in a virtualization platform"; QEMU's docs/specs/vmgenid.txt lists its requirements as
// R1-R6) asks of the device object:
//  - _CID "VM_Gen_Counter" and _DDN "VM_Gen_Counter": how a guest finds it (Windows; Linux too,
//    since ACPICA upper-cases a _CID string to "VM_GEN_COUNTER", which drivers/virt/vmgenid.c
//    matches);
//  - a _HID (R6 wants one unique to the hypervisor vendor; we have no registered vendor ID and use
//    "VMGENCTR", the ID Linux's driver (6.1) matches first, so it binds by _HID alone);
//  - ADDR, evaluating to a Package of two DWORDs: the low and high 32 bits of the guest physical
//    address of the 16-byte ID;
//  - Notify(device, 0x80) when the ID changes (here: the GED's _EVT, ../acpi/dsdt.ts).
import * as aml from '../acpi/aml.js'

/** The device's name in \_SB. */
export const VMGENID_DEVICE = 'VGEN'
export const VMGENID_PATH = `\\_SB.${VMGENID_DEVICE}`
/** The notification value for "the generation ID changed" (Microsoft's specification). */
export const VMGENID_NOTIFY = 0x80

/** Device(VGEN) with _HID, _CID, _DDN and Method(ADDR) returning Package(2) { low, high } of `address`. */
export function vmgenidAml(address: number): aml.Aml {
  if (!Number.isSafeInteger(address) || address < 0 || address % 8 !== 0)
    throw new RangeError(`the generation ID's address ${address} is not an 8-byte aligned address (R1a)`)
  const low = address % 2 ** 32
  const high = Math.floor(address / 2 ** 32)
  return aml.device(
    VMGENID_DEVICE,
    aml.name('_HID', aml.string('VMGENCTR')),
    aml.name('_CID', aml.string('VM_Gen_Counter')),
    aml.name('_DDN', aml.string('VM_Gen_Counter')),
    aml.method('ADDR', 0, false, aml.ret(aml.pkg(aml.dword(low), aml.dword(high)))),
  )
}

// The generation ID as bytes (what the guest reads) and as text (what a client sees). Microsoft's
// "Virtual Machine Generation ID" (2012) calls it a 128-bit cryptographically random integer;
// QEMU (docs/specs/vmgenid.txt, "Endian-ness Considerations") keeps it in guest memory
// little-endian and writes it as a GUID: the text's first three fields (8, 4 and 4 hex digits)
// are stored byte-reversed, the last eight bytes as written (the Microsoft GUID layout). We do
// the same, so `query-vm-generation-id` answers what a QEMU client expects for the same bytes.
import { randomBytes } from 'node:crypto'

/** The generation ID's size in bytes. */
export const VMGENID_SIZE = 16

/** 128 bits from the host's CSPRNG (Node's randomBytes: OpenSSL's DRBG, seeded by getrandom). */
export function randomGenerationId(): Uint8Array {
  return new Uint8Array(randomBytes(VMGENID_SIZE))
}

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join('')

/** The first three GUID fields are little-endian in memory: bytes 0-3, 4-5 and 6-7 reversed. */
function swapFields(b: Uint8Array): Uint8Array {
  return Uint8Array.of(b[3]!, b[2]!, b[1]!, b[0]!, b[5]!, b[4]!, b[7]!, b[6]!, ...b.subarray(8))
}

/** "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" for the 16 bytes as the guest sees them. */
export function guidText(id: Uint8Array): string {
  if (id.length !== VMGENID_SIZE) throw new RangeError(`a generation ID has 16 bytes, not ${id.length}`)
  const h = hex(swapFields(id))
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

export const GUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'

/** The bytes the guest reads for GUID text `text` (guidText's inverse). */
export function guidBytes(text: string): Uint8Array {
  if (!new RegExp(GUID_PATTERN).test(text))
    throw new RangeError(
      `"${text}" is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, hex digits)`,
    )
  const h = text.replaceAll('-', '')
  return swapFields(
    Uint8Array.from({ length: VMGENID_SIZE }, (_, i) => Number.parseInt(h.slice(2 * i, 2 * i + 2), 16)),
  )
}

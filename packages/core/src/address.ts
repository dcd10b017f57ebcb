// Guest physical addresses are branded numbers. x86-64 physical addresses fit in 52 bits, below
// Number.MAX_SAFE_INTEGER (2^53), so a plain number is exact and avoids bigint arithmetic on every
// access; the brand stops an offset inside a region or device being passed where a guest address is
// expected (design idea 2).

declare const guestAddressBrand: unique symbol

/** A guest physical address. Make one with {@link guestAddress}. */
export type GuestAddress = number & { readonly [guestAddressBrand]: true }

/** The highest guest physical address plus one that the framework accepts (2^52). */
export const GUEST_ADDRESS_LIMIT = 2 ** 52

/** Brands `value` as a guest address; throws a RangeError unless it is an integer in [0, 2^52). */
export function guestAddress(value: number): GuestAddress {
  if (!Number.isInteger(value) || value < 0 || value >= GUEST_ADDRESS_LIMIT) {
    throw new RangeError(`not a guest physical address: ${value}`)
  }
  return value as GuestAddress
}

/** `address + offset` as a guest address, checked like {@link guestAddress}. */
export function addressAdd(address: GuestAddress, offset: number): GuestAddress {
  return guestAddress(address + offset)
}

/** Hexadecimal rendering used in every message about addresses. */
export function hex(value: number): string {
  return `0x${value.toString(16)}`
}

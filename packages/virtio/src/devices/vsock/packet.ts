/** struct virtio_vsock_hdr (§5.10.6): 44 bytes, little-endian. */
export const VSOCK_HDR_SIZE = 44

/** Operations (§5.10.6). */
export const VsockOp = {
  REQUEST: 1,
  RESPONSE: 2,
  RST: 3,
  SHUTDOWN: 4,
  RW: 5,
  CREDIT_UPDATE: 6,
  CREDIT_REQUEST: 7,
} as const

/** SHUTDOWN flags: the sender will receive / send no more (§5.10.6.4). */
export const ShutdownFlag = { RCV: 1, SEND: 2 } as const

export const VSOCK_TYPE_STREAM = 1
/** The host's CID (§5.10.4). */
export const HOST_CID = 2

export interface VsockHeader {
  srcCid: bigint
  dstCid: bigint
  srcPort: number
  dstPort: number
  len: number
  type: number
  op: number
  flags: number
  bufAlloc: number
  fwdCnt: number
}

export function decodeHeader(bytes: Uint8Array): VsockHeader {
  const v = new DataView(bytes.buffer, bytes.byteOffset, VSOCK_HDR_SIZE)
  return {
    srcCid: v.getBigUint64(0, true),
    dstCid: v.getBigUint64(8, true),
    srcPort: v.getUint32(16, true),
    dstPort: v.getUint32(20, true),
    len: v.getUint32(24, true),
    type: v.getUint16(28, true),
    op: v.getUint16(30, true),
    flags: v.getUint32(32, true),
    bufAlloc: v.getUint32(36, true),
    fwdCnt: v.getUint32(40, true),
  }
}

export function encodeHeader(h: VsockHeader, into: Uint8Array): void {
  const v = new DataView(into.buffer, into.byteOffset, VSOCK_HDR_SIZE)
  v.setBigUint64(0, h.srcCid, true)
  v.setBigUint64(8, h.dstCid, true)
  v.setUint32(16, h.srcPort, true)
  v.setUint32(20, h.dstPort, true)
  v.setUint32(24, h.len, true)
  v.setUint16(28, h.type, true)
  v.setUint16(30, h.op, true)
  v.setUint32(32, h.flags, true)
  v.setUint32(36, h.bufAlloc, true)
  v.setUint32(40, h.fwdCnt, true)
}

// The vsock event queue (virtio 1.2 §5.10.2: queue 2) and its one event, TRANSPORT_RESET
// (§5.10.6.6): "communication has been interrupted", which the device sends after a restore from
// a snapshot. The driver then resets every connected socket, keeps listening ones, and reads the
// guest CID from the configuration again (§5.10.6.6.1; Linux virtio_vsock_event_handle), so a
// clone restored with another CID takes it at this point.
import { completeChain, type DeviceContext, takeChain } from '../../device.js'
import { scatter } from '../../queue/buffers.js'

export const EVENT_QUEUE = 2
/** enum virtio_vsock_event_id (§5.10.6.6). */
export const VsockEvent = { TRANSPORT_RESET: 0 } as const
/** struct virtio_vsock_event { le32 id; }. */
const EVENT_SIZE = 4

/**
 * Writes a TRANSPORT_RESET into the driver's next event buffer. False when the driver has posted
 * none yet: the caller keeps the event and tries again when the driver notifies the event queue.
 */
export function sendTransportReset(context: DeviceContext): boolean {
  const chain = takeChain(context, EVENT_QUEUE)
  if (!chain) return false
  const event = new Uint8Array(EVENT_SIZE)
  new DataView(event.buffer).setUint32(0, VsockEvent.TRANSPORT_RESET, true)
  // A buffer too small for the event is given back empty; the driver's handler ignores it, and
  // the event is then lost as it would be on real hardware with a broken driver.
  const written = chain.writableLength >= EVENT_SIZE ? scatter(context.memory, chain.writable, 0, event) : 0
  completeChain(context, EVENT_QUEUE, chain.head, written)
  return true
}

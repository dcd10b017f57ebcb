// struct virtio_pci_common_cfg (virtio 1.2 §4.1.4.3) as the driver reads and writes it: the feature
// and queue selectors, the MSI-X vector of each queue and of configuration changes, and the fields
// that the shared TransportCore keeps (features, status, queue set-up).
import type { SavedState } from '@vmm/core'
import { readLe, writeLe } from '@vmm/pci'
import type { SplitQueue } from '../queue/split-queue.js'
import { high, low, setHalf, type TransportCore } from '../transport/core.js'
import { CommonCfg, fieldWidth, isAddressField, VIRTIO_MSI_NO_VECTOR } from './layout.js'

/** CommonConfig's saved state (§4.1.4.3's selectors and MSI-X vectors). */
export interface CommonConfigState {
  deviceFeatureSelect: number
  driverFeatureSelect: number
  queueSelect: number
  configVector: number
  queueVectors: number[]
}

export class CommonConfig {
  private deviceFeatureSelect = 0
  private driverFeatureSelect = 0
  private queueSelect = 0
  /** config_msix_vector (§4.1.5.1.2). */
  configVector: number = VIRTIO_MSI_NO_VECTOR
  /** queue_msix_vector of each queue. */
  readonly queueVectors: number[]

  /**
   * @param vectors how many MSI-X vectors the function has (a larger vector reads back as NO_VECTOR)
   * @param onReset the driver wrote 0 to device_status (§4.1.4.3.2)
   */
  constructor(
    private readonly core: TransportCore,
    private readonly vectors: () => number,
    private readonly onReset: () => void,
  ) {
    this.queueVectors = new Array(core.queues.length).fill(VIRTIO_MSI_NO_VECTOR)
  }

  /** The transport's reset: selectors to 0, every vector to NO_VECTOR. */
  reset(): void {
    this.deviceFeatureSelect = this.driverFeatureSelect = this.queueSelect = 0
    this.configVector = VIRTIO_MSI_NO_VECTOR
    this.queueVectors.fill(VIRTIO_MSI_NO_VECTOR)
  }

  /** For a snapshot: the selectors and vectors (the rest of the structure is TransportCore's). */
  saveState(): CommonConfigState {
    const { deviceFeatureSelect, driverFeatureSelect, queueSelect, configVector } = this
    return {
      deviceFeatureSelect,
      driverFeatureSelect,
      queueSelect,
      configVector,
      queueVectors: [...this.queueVectors],
    }
  }

  /** Checks a saved state as the driver's writes would be (a vector the function lacks is refused). */
  restoreState(s: SavedState): void {
    s.only('deviceFeatureSelect', 'driverFeatureSelect', 'queueSelect', 'configVector', 'queueVectors')
    const vector = (v: number) => v === VIRTIO_MSI_NO_VECTOR || v < this.vectors()
    const configVector = s.int('configVector', 0, 0xffff)
    if (!vector(configVector))
      s.refuse('configVector', `${configVector}: the function has ${this.vectors()} MSI-X vectors`)
    const queueVectors = s.ints('queueVectors', 0, 0xffff, this.queueVectors.length)
    if (queueVectors.length !== this.queueVectors.length)
      s.refuse('queueVectors', `${queueVectors.length} vectors for ${this.queueVectors.length} queues`)
    const bad = queueVectors.findIndex((v) => !vector(v))
    if (bad >= 0)
      s.refuse(
        'queueVectors',
        `queue ${bad}: ${queueVectors[bad]}: the function has ${this.vectors()} MSI-X vectors`,
      )
    const selects = {
      deviceFeatureSelect: s.int('deviceFeatureSelect', 0, 0xffff_ffff),
      driverFeatureSelect: s.int('driverFeatureSelect', 0, 0xffff_ffff),
      queueSelect: s.int('queueSelect', 0, 0xffff),
    }
    Object.assign(this, selects)
    this.configVector = configVector
    this.queueVectors.splice(0, queueVectors.length, ...queueVectors)
  }

  private get selected(): SplitQueue | undefined {
    return this.core.queues[this.queueSelect]
  }

  /**
   * §4.1.3.1: each field is accessed with its natural width, 64-bit ones also as two 32-bit
   * halves. Other accesses read 0 and are ignored when written.
   */
  read(offset: number, data: Uint8Array): void {
    if (data.length === 8 && isAddressField(offset)) {
      writeLe(data, this.queueAddress(offset))
      return
    }
    if (fieldWidth(offset) !== data.length) return
    writeLe(data, this.field(offset))
  }

  private field(offset: number): number {
    const q = this.selected
    const C = CommonCfg
    switch (offset) {
      case C.DEVICE_FEATURE_SELECT:
        return this.deviceFeatureSelect
      case C.DEVICE_FEATURE:
        return this.core.deviceFeatureWord(this.deviceFeatureSelect)
      case C.DRIVER_FEATURE_SELECT:
        return this.driverFeatureSelect
      case C.DRIVER_FEATURE:
        return this.core.driverFeatureWord(this.driverFeatureSelect)
      case C.CONFIG_MSIX_VECTOR:
        return this.configVector
      case C.NUM_QUEUES:
        return this.core.queues.length
      case C.DEVICE_STATUS:
        return this.core.deviceStatus
      case C.CONFIG_GENERATION:
        return this.core.configGeneration & 0xff
      case C.QUEUE_SELECT:
        return this.queueSelect
      case C.QUEUE_SIZE:
        // §4.1.4.3: 0 says the queue is unavailable.
        return q?.size ?? 0
      case C.QUEUE_MSIX_VECTOR:
        return q ? this.queueVectors[this.queueSelect]! : VIRTIO_MSI_NO_VECTOR
      case C.QUEUE_ENABLE:
        return q?.ready ? 1 : 0
      case C.QUEUE_NOTIFY_OFF:
        return q ? this.queueSelect : 0
      default: {
        // A 32-bit half of queue_desc, queue_driver or queue_device.
        const field = offset & ~7
        const value = this.queueAddress(field)
        return offset === field ? low(value) : high(value)
      }
    }
  }

  private queueAddress(field: number): number {
    const q = this.selected
    if (!q) return 0
    return field === CommonCfg.QUEUE_DESC
      ? q.descTable
      : field === CommonCfg.QUEUE_DRIVER
        ? q.availRing
        : q.usedRing
  }

  write(offset: number, data: Uint8Array): void {
    if (data.length === 8 && isAddressField(offset)) {
      this.write(offset, data.subarray(0, 4))
      this.write(offset + 4, data.subarray(4, 8))
      return
    }
    if (fieldWidth(offset) !== data.length) return
    const value = readLe(data)
    const C = CommonCfg
    switch (offset) {
      case C.DEVICE_FEATURE_SELECT:
        this.deviceFeatureSelect = value
        return
      case C.DRIVER_FEATURE_SELECT:
        this.driverFeatureSelect = value
        return
      case C.DRIVER_FEATURE:
        this.core.setDriverFeatureWord(this.driverFeatureSelect, value)
        return
      case C.CONFIG_MSIX_VECTOR:
        this.configVector = this.vectorOrNone(value)
        return
      case C.DEVICE_STATUS:
        if (value === 0) this.onReset()
        else this.core.setStatus(value)
        return
      case C.QUEUE_SELECT:
        this.queueSelect = value
        return
      case C.QUEUE_SIZE: {
        const q = this.core.queueForSetup(this.queueSelect)
        if (q) q.size = value
        return
      }
      case C.QUEUE_MSIX_VECTOR:
        if (this.selected) this.queueVectors[this.queueSelect] = this.vectorOrNone(value)
        return
      case C.QUEUE_ENABLE:
        // §4.1.4.3.2: the driver never writes 0 here (a queue is disabled by a reset); ignore it.
        if (value === 1) this.core.setQueueReady(this.queueSelect, true)
        return
      case C.DEVICE_FEATURE:
      case C.NUM_QUEUES:
      case C.CONFIG_GENERATION:
      case C.QUEUE_NOTIFY_OFF:
        return // read-only
      default: {
        const q = this.core.queueForSetup(this.queueSelect)
        if (!q) return
        const field = offset & ~7
        const isHigh = offset !== field
        if (field === C.QUEUE_DESC) q.descTable = setHalf(q.descTable, isHigh, value)
        else if (field === C.QUEUE_DRIVER) q.availRing = setHalf(q.availRing, isHigh, value)
        else q.usedRing = setHalf(q.usedRing, isHigh, value)
      }
    }
  }

  /** §4.1.5.1.2: a vector the function does not have reads back as NO_VECTOR (mapping failed). */
  private vectorOrNone(value: number): number {
    return value < this.vectors() ? value : VIRTIO_MSI_NO_VECTOR
  }
}

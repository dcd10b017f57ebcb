// The system handle, /dev/kvm (src/native/system.cc): opening it with every reason it cannot be
// used named, what the host's KVM offers, and creating VMs.
import { isKvmSystemError, KVM_API_VERSION, KvmUnavailableError, unavailableFromOpenError } from './errors.js'
import { type NativeBinding, native } from './native.js'
import { decodeCpuid } from './state/layouts.js'
import { type CpuidEntry, KvmCap, type KvmCapName } from './types.js'
import { Vm } from './vm.js'

/** The system handle: /dev/kvm. */
export class Kvm {
  private closed = false

  private constructor(
    readonly path: string,
    private readonly fd: number,
    private readonly n: NativeBinding,
  ) {}

  /**
   * Opens /dev/kvm (or `path`) and checks the API version. Any reason KVM cannot be used comes back
   * as one KvmUnavailableError whose `reason` says which.
   */
  static open(path = '/dev/kvm'): Kvm {
    let n: NativeBinding
    try {
      n = native()
    } catch (e) {
      throw new KvmUnavailableError('native-module', path, (e as Error).message, { cause: e })
    }
    let fd: number
    try {
      fd = n.openSystem(path)
    } catch (e) {
      throw unavailableFromOpenError(path, e)
    }
    let version: number
    try {
      version = n.apiVersion(fd)
    } catch (e) {
      n.closeFd(fd)
      const code = isKvmSystemError(e) ? e.code : ''
      throw new KvmUnavailableError(
        'not-kvm',
        path,
        `KVM is not available: ${path} does not answer KVM_GET_API_VERSION (${code || (e as Error).message}); is it the KVM device?`,
        { cause: e },
      )
    }
    if (version !== KVM_API_VERSION) {
      n.closeFd(fd)
      throw new KvmUnavailableError(
        'api-version',
        path,
        `KVM is not available: ${path} speaks API version ${version}, this VMM needs ${KVM_API_VERSION}`,
      )
    }
    return new Kvm(path, fd, n)
  }

  /** Why KVM cannot be used here, or undefined when it can (for tests that must skip with a reason). */
  static unavailableReason(path = '/dev/kvm'): string | undefined {
    try {
      Kvm.open(path).close()
      return undefined
    } catch (e) {
      return (e as Error).message
    }
  }

  get apiVersion(): number {
    return this.n.apiVersion(this.fd)
  }

  /** KVM_CHECK_EXTENSION: 0 when absent, else a capability-specific positive value. */
  checkExtension(cap: KvmCapName | number): number {
    return this.n.checkExtension(this.fd, typeof cap === 'number' ? cap : KvmCap[cap])
  }

  /** Every capability this package knows by name, with the host's answer. */
  capabilities(): Record<KvmCapName, number> {
    const out = {} as Record<KvmCapName, number>
    for (const name of Object.keys(KvmCap) as KvmCapName[]) out[name] = this.checkExtension(name)
    return out
  }

  get vcpuMmapSize(): number {
    return this.n.vcpuMmapSize(this.fd)
  }

  supportedCpuid(): CpuidEntry[] {
    return decodeCpuid(this.n.supportedCpuid(this.fd))
  }

  msrIndexList(): number[] {
    return this.n.msrIndexList(this.fd, false)
  }

  msrFeatureIndexList(): number[] {
    return this.n.msrIndexList(this.fd, true)
  }

  createVm(): Vm {
    if (this.closed) throw new Error('Kvm handle is closed')
    return new Vm(this, this.n, this.fd)
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.n.closeFd(this.fd)
  }
}

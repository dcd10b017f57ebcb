import { constants as osConstants } from 'node:os'

/** A failed system call of the KVM layer, shaped like Node's own system errors. */
export interface KvmSystemError extends Error {
  /** errno name, e.g. 'EINVAL', 'EEXIST'. */
  code: string
  /** Negative errno, as Node's fs and net errors carry it. */
  errno: number
  syscall: string
  /** The ioctl request's name when the call was an ioctl, e.g. 'KVM_CREATE_VCPU'. */
  ioctl?: string
}

export function isKvmSystemError(e: unknown): e is KvmSystemError {
  return e instanceof Error && typeof (e as Partial<KvmSystemError>).code === 'string' && 'syscall' in e
}

export type KvmUnavailableReason = 'missing' | 'permission' | 'api-version' | 'not-kvm' | 'native-module'

/** /dev/kvm cannot be used: one error that says which of the reasons it is. */
export class KvmUnavailableError extends Error {
  override readonly name = 'KvmUnavailableError'
  constructor(
    readonly reason: KvmUnavailableReason,
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/** The KVM API version this binding speaks (Documentation/virt/kvm/api.rst: "should be 12"). */
export const KVM_API_VERSION = 12

export function unavailableFromOpenError(path: string, e: unknown): KvmUnavailableError {
  const code = isKvmSystemError(e) ? e.code : undefined
  switch (code) {
    case 'ENOENT':
      return new KvmUnavailableError(
        'missing',
        path,
        `KVM is not available: ${path} does not exist (is the kvm module loaded, or is this a VM without nested virtualisation?)`,
        { cause: e },
      )
    case 'EACCES':
    case 'EPERM':
      return new KvmUnavailableError(
        'permission',
        path,
        `KVM is not available: no permission to open ${path} (run as root or add the user to the group that owns it, usually 'kvm')`,
        { cause: e },
      )
    default:
      return new KvmUnavailableError(
        'not-kvm',
        path,
        `KVM is not available: cannot open ${path}: ${(e as Error).message}`,
        {
          cause: e,
        },
      )
  }
}

/** The errno name of a positive errno value ('EINTR'), or ERRNO_<n> when Node does not know it. */
export function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(osConstants.errno)) if (value === errno) return name
  return `ERRNO_${errno}`
}

/** A KvmSystemError for an ioctl the kernel answered without failing, that still refused part of
 * the request (KVM_GET_MSRS processing fewer MSRs than asked, say). */
export function kvmSystemError(ioctl: string, code: string, message: string): KvmSystemError {
  const errno = (osConstants.errno as Record<string, number>)[code] ?? 0
  return Object.assign(new Error(message), { code, errno: -errno, syscall: 'ioctl', ioctl })
}

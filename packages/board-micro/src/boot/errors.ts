/** Why a kernel, initrd or command line cannot be booted: the closed set callers switch on. */
export type BootErrorCode =
  | 'NOT_FOUND'
  | 'NOT_A_KERNEL'
  | 'BAD_INITRD'
  | 'UNSUPPORTED_KERNEL'
  | 'DOES_NOT_FIT'
  | 'CMDLINE_TOO_LONG'
  | 'TOO_LITTLE_MEMORY'

/** Raised before any vCPU runs, naming the file and what is wrong with it. */
export class BootError extends Error {
  override readonly name = 'BootError'
  constructor(
    readonly code: BootErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

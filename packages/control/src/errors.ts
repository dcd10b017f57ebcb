// QMP's error classes (QEMU qapi/error.json, QapiErrorClass): a failed command answers
// `{"error": {"class", "desc"}}` (qmp-spec §2.4.2). The command layer throws CommandError; a
// transport turns it into its own wire form.

export type ErrorClass =
  | 'GenericError'
  | 'CommandNotFound'
  | 'DeviceNotActive'
  | 'DeviceNotFound'
  | 'KVMMissingCap'

export class CommandError extends Error {
  override readonly name = 'CommandError'
  constructor(
    readonly errorClass: ErrorClass,
    message: string,
  ) {
    super(message)
  }
}

/** Any thrown value as a CommandError: a CommandError as is, anything else a GenericError. */
export function asCommandError(e: unknown): CommandError {
  if (e instanceof CommandError) return e
  return new CommandError('GenericError', e instanceof Error ? e.message : String(e))
}

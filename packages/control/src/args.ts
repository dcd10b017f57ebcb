// Argument validation for the verbs, done before any verb runs so that unknown or ill-typed
// arguments are refused before any side effect (qmp-spec §2.4: the server checks a command's
// arguments against its schema). Small on purpose: QMP arguments are flat JSON objects of
// strings, numbers and booleans, plus a few nested objects (blockdev-add's `file`).
import { CommandError } from './errors.js'

export type ArgType = 'string' | 'int' | 'number' | 'boolean' | 'object' | 'any'

export interface ArgSpec {
  readonly type: ArgType
  readonly optional?: boolean
  readonly description?: string
}

/** The arguments a verb takes; `rest` lets other names through (device_add's device properties). */
export interface ArgsSpec {
  readonly args: Readonly<Record<string, ArgSpec>>
  readonly rest?: boolean
}

const isPlainObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x)

function typeOk(type: ArgType, v: unknown): boolean {
  switch (type) {
    case 'string':
      return typeof v === 'string'
    case 'int':
      return typeof v === 'number' && Number.isSafeInteger(v)
    case 'number':
      return typeof v === 'number' && Number.isFinite(v)
    case 'boolean':
      return typeof v === 'boolean'
    case 'object':
      return isPlainObject(v)
    case 'any':
      return v !== undefined
  }
}

/**
 * Checks `raw` (the `arguments` member, absent meaning `{}`) against `spec` and returns it as a
 * fresh object. Throws a GenericError naming the command and the argument at fault, as QEMU does
 * ("Parameter 'x' is unexpected", "Invalid parameter type for 'x', expected: ...").
 */
export function validateArgs(command: string, spec: ArgsSpec, raw: unknown): Record<string, unknown> {
  if (raw === undefined) raw = {}
  if (!isPlainObject(raw))
    throw new CommandError('GenericError', `${command}: "arguments" must be a JSON object`)
  const out: Record<string, unknown> = {}
  for (const [name, v] of Object.entries(raw)) {
    const arg = Object.hasOwn(spec.args, name) ? spec.args[name] : undefined
    if (!arg) {
      if (!spec.rest) throw new CommandError('GenericError', `${command}: parameter '${name}' is unexpected`)
    } else if (!typeOk(arg.type, v)) {
      throw new CommandError(
        'GenericError',
        `${command}: invalid parameter type for '${name}', expected: ${arg.type}`,
      )
    }
    // defineProperty, not assignment: a `__proto__` member from JSON.parse stays plain data.
    Object.defineProperty(out, name, { value: v, enumerable: true, writable: true, configurable: true })
  }
  for (const [name, arg] of Object.entries(spec.args)) {
    if (!arg.optional && !Object.hasOwn(out, name))
      throw new CommandError('GenericError', `${command}: parameter '${name}' is missing`)
  }
  return out
}

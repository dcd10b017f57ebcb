// query-qmp-schema: the QMP wire ABI as QEMU describes it (qapi/introspect.json, SchemaInfo),
// generated from the verbs' own argument and return declarations and the events' data, so it
// cannot drift from what the server checks. As QEMU does, every type but the builtins gets a
// masked name ("0", "1", ..., arrays "[<element>]"): clients may read shapes, not rely on names.
// "0" is the empty object (the arguments of a command that takes none, the return of one that
// returns nothing), as in QEMU.
import type { ArgsSpec, ArgType } from './args.js'

/**
 * A QAPI type in short: a builtin by name, an array, an enum, or an object whose optional members
 * carry QAPI's `*` prefix (`{'*alias': 'str'}`).
 */
export type TypeSpec =
  | Builtin
  | { readonly array: TypeSpec }
  | { readonly enum: readonly string[] }
  | { readonly object: Readonly<Record<string, TypeSpec>> }

type Builtin = 'str' | 'int' | 'number' | 'bool' | 'null' | 'any'

/** SchemaInfo (qapi/introspect.json), the members we emit. */
export type SchemaInfo = { readonly name: string; readonly 'meta-type': string } & Record<string, unknown>

/** introspect.json JSONType of each builtin. */
const JSON_TYPE: Record<Builtin, string> = {
  str: 'string',
  int: 'int',
  number: 'number',
  bool: 'boolean',
  null: 'null',
  any: 'value',
}

const ARG_TYPE: Record<ArgType, TypeSpec> = {
  string: 'str',
  int: 'int',
  number: 'number',
  boolean: 'bool',
  object: 'any',
  any: 'any',
}

/** A verb's declared arguments as a QAPI object type. */
export function argsType(spec: ArgsSpec): TypeSpec {
  return {
    object: Object.fromEntries(
      Object.entries(spec.args).map(([name, a]) => [a.optional ? `*${name}` : name, ARG_TYPE[a.type]]),
    ),
  }
}

export interface Introspected {
  readonly commands: readonly { name: string; args: TypeSpec; returns?: TypeSpec | undefined }[]
  readonly events: readonly { name: string; data?: TypeSpec | undefined }[]
}

/** The SchemaInfo list for these commands and events: commands, events, then the types they use. */
export function qmpSchema({ commands, events }: Introspected): SchemaInfo[] {
  const types: SchemaInfo[] = []
  const named = new Map<string, string>()
  const builtins = new Set<Builtin>()
  let next = 0
  const nameOf = (t: TypeSpec): string => {
    if (typeof t === 'string') {
      builtins.add(t)
      return t
    }
    const key = JSON.stringify(t)
    const known = named.get(key)
    if (known !== undefined) return known
    if ('array' in t) {
      const element = nameOf(t.array)
      const name = `[${element}]`
      named.set(key, name)
      types.push({ name, 'meta-type': 'array', 'element-type': element })
      return name
    }
    const name = String(next++)
    named.set(key, name) // before the members: a member's type gets the next number
    if ('enum' in t) {
      types.push({
        name,
        'meta-type': 'enum',
        members: t.enum.map((v) => ({ name: v })),
        values: [...t.enum],
      })
      return name
    }
    const info: SchemaInfo = { name, 'meta-type': 'object', members: [] }
    types.push(info)
    info.members = Object.entries(t.object).map(([k, v]) => {
      const optional = k.startsWith('*')
      // introspect.json SchemaInfoObjectMember: an optional member has `default: null`.
      return optional ? { name: k.slice(1), type: nameOf(v), default: null } : { name: k, type: nameOf(v) }
    })
    return name
  }
  nameOf({ object: {} }) // "0"
  const out: SchemaInfo[] = []
  for (const c of commands)
    out.push({
      name: c.name,
      'meta-type': 'command',
      'arg-type': nameOf(c.args),
      'ret-type': nameOf(c.returns ?? { object: {} }),
    })
  for (const e of events)
    out.push({ name: e.name, 'meta-type': 'event', 'arg-type': nameOf(e.data ?? { object: {} }) })
  for (const b of [...builtins].sort())
    out.push({ name: b, 'meta-type': 'builtin', 'json-type': JSON_TYPE[b] })
  return [...out, ...types]
}

// `vmm ctl`: one QMP command (or the event stream) against a running `vmm run --qmp <path>`,
// through @vmm/control's QmpClient. Any QMP server works (QEMU's too): it only speaks qmp-spec.
import { parseArgs } from 'node:util'

export const CTL_USAGE = `usage: vmm ctl <socket> <command> [json-arguments] [--json]
       vmm ctl <socket> events [--json]

  <command>         a QMP command (query-commands lists them), e.g. query-status, stop, cont, quit
  json-arguments    its arguments as one JSON object, e.g. '{"id":"rng1"}'
  --json            print the answer (or each event) as one line of JSON: {"return": ...}
  events            print events as they come until the run ends (or Ctrl-C)`

/** Runs `vmm ctl ...`; resolves with the exit code (0 ok, 1 the command failed, 2 usage). */
export async function ctl(argv: readonly string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse(argv)
  } catch (e) {
    process.stderr.write(`vmm ctl: ${(e as Error).message}\n\n${CTL_USAGE}\n`)
    return 2
  }
  if (parsed === 'help') {
    process.stdout.write(`${CTL_USAGE}\n`)
    return 0
  }
  const { socket, command, args, json } = parsed
  const { QmpClient, QmpError } = await import('@vmm/control')
  let client: import('@vmm/control').QmpClient
  try {
    client = await QmpClient.connect(socket)
  } catch (e) {
    process.stderr.write(`vmm ctl: cannot talk QMP on ${socket}: ${(e as Error).message}\n`)
    return 1
  }
  if (command === 'events') {
    client.on((e: import('@vmm/control').QmpEvent) => {
      if (json) process.stdout.write(`${JSON.stringify(e)}\n`)
      else {
        const at = new Date(e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000).toISOString()
        process.stdout.write(`${at} ${e.event}${e.data ? ` ${JSON.stringify(e.data)}` : ''}\n`)
      }
    })
    const stop = () => void client.close()
    process.once('SIGINT', stop)
    await client.closed
    process.off('SIGINT', stop)
    return 0
  }
  try {
    const result = await client.execute(command, args)
    if (json) process.stdout.write(`${JSON.stringify({ return: result })}\n`)
    else if (!isEmpty(result)) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
    return 0
  } catch (e) {
    if (json && e instanceof QmpError)
      process.stdout.write(`${JSON.stringify({ error: { class: e.errorClass, desc: e.desc } })}\n`)
    else process.stderr.write(`vmm ctl: ${command}: ${(e as Error).message}\n`)
    return 1
  } finally {
    await client.close()
  }
}

function parse(argv: readonly string[]) {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  })
  if (values.help) return 'help' as const
  const [socket, command, rawArgs, ...extra] = positionals
  if (socket === undefined) throw new Error('ctl needs the QMP socket path (vmm run --qmp <path>)')
  if (command === undefined) throw new Error('ctl needs a command (or "events")')
  if (extra.length > 0) throw new Error(`unexpected arguments: ${extra.join(' ')}`)
  if (command === 'events' && rawArgs !== undefined) throw new Error('events takes no arguments')
  let args: Record<string, unknown> | undefined
  if (rawArgs !== undefined) {
    let value: unknown
    try {
      value = JSON.parse(rawArgs)
    } catch (e) {
      throw new Error(`the arguments of ${command} are not JSON (${(e as Error).message}): ${rawArgs}`)
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new Error(`the arguments of ${command} must be a JSON object, not ${rawArgs}`)
    args = value as Record<string, unknown>
  }
  return { socket, command, args, json: values.json === true }
}

function isEmpty(v: unknown): boolean {
  return (
    v === undefined ||
    (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0)
  )
}

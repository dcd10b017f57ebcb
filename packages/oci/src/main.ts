#!/usr/bin/env node
// vmm-oci: a runc-compatible command line (the calls containerd's runc shim makes, as
// ../../shared/docs/containers.md lists them), each container in a microVM of ours. Global flags
// come before the command, the command's flags before the container id, as with runc.
import { readFileSync } from 'node:fs'
import { OciError } from './errors.js'
import { type Logger, openLog } from './log.js'

export const VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version
export const DEFAULT_ROOT = '/run/vmm-oci'

const USAGE = `usage: vmm-oci [global flags] <command> [flags] <container-id>

global flags: --root <dir> (${DEFAULT_ROOT}), --log <file>, --log-format text|json,
              --systemd-cgroup, --debug (accepted), --version, --help,
              --no-seccomp (the VM's sandbox process runs without vmm's seccomp filters),
              --no-jail (the sandbox is not confined in a jail of its own; as root it is by default),
              --no-template (boot each container's VM, not restore the pre-booted template)
commands:
  create --bundle <dir> [--pid-file <file>] [--console-socket <socket>] <id>
  start <id>                      run the container's process
  state <id>                      the state JSON
  kill [--all] <id> [signal]      a number or a name (default SIGTERM)
  delete [--force] <id>
  exec --process <process.json> [--detach] [--pid-file <file>] [--console-socket <socket>] <id>
  exec [-t] [--cwd <dir>] [--env K=V] <id> <command> [args...]
  ps [--format table|json] <id>   the container's host pids
  pause <id> | resume <id>
  update --resources <file|-> <id>
  list                            the containers under --root
  features                        what this runtime supports (JSON)
  template build                  the pre-booted container template, made now (else at first use)`

type FlagKind = 'value' | 'bool' | 'list'
const GLOBAL: Record<string, FlagKind> = {
  root: 'value',
  log: 'value',
  'log-format': 'value',
  'systemd-cgroup': 'bool',
  'no-seccomp': 'bool',
  'no-jail': 'bool',
  'no-template': 'bool',
  debug: 'bool',
  criu: 'value',
  rootless: 'value',
  version: 'bool',
  v: 'bool',
  help: 'bool',
  h: 'bool',
}
const COMMAND_FLAGS: Record<string, Record<string, FlagKind>> = {
  create: {
    bundle: 'value',
    b: 'value',
    'pid-file': 'value',
    'console-socket': 'value',
    'no-pivot': 'bool',
    'no-new-keyring': 'bool',
    'preserve-fds': 'value',
  },
  run: {},
  start: {},
  state: {},
  kill: { all: 'bool', a: 'bool' },
  delete: { force: 'bool', f: 'bool' },
  exec: {
    process: 'value',
    p: 'value',
    detach: 'bool',
    d: 'bool',
    'pid-file': 'value',
    'console-socket': 'value',
    tty: 'bool',
    t: 'bool',
    cwd: 'value',
    env: 'list',
    e: 'list',
    'preserve-fds': 'value',
    user: 'value',
    u: 'value',
  },
  ps: { format: 'value', f: 'value' },
  pause: {},
  resume: {},
  update: { resources: 'value', r: 'value' },
  list: { format: 'value', f: 'value', quiet: 'bool', q: 'bool' },
  features: {},
  template: {},
}

export interface Parsed {
  flags: Record<string, string | boolean | string[]>
  rest: string[]
}

/** Parses `--name value`, `--name=value`, `-name value` and bools from the front of args. */
export function parseFlags(args: readonly string[], known: Record<string, FlagKind>, where: string): Parsed {
  const flags: Parsed['flags'] = {}
  let i = 0
  for (; i < args.length; i++) {
    const a = args[i]!
    if (a === '--') {
      i++
      break
    }
    if (!a.startsWith('-') || a === '-') break
    const body = a.replace(/^--?/, '')
    const eq = body.indexOf('=')
    const name = eq >= 0 ? body.slice(0, eq) : body
    const inline = eq >= 0 ? body.slice(eq + 1) : undefined
    const kind = known[name]
    if (!kind) throw new OciError(`flag provided but not defined: -${name} (${where})`, 2)
    if (kind === 'bool') {
      flags[name] = inline === undefined ? true : inline !== 'false'
      continue
    }
    const value = inline ?? args[++i]
    if (value === undefined) throw new OciError(`flag needs an argument: ${a} (${where})`, 2)
    if (kind === 'list') flags[name] = [...((flags[name] as string[] | undefined) ?? []), value]
    else flags[name] = value
  }
  return { flags, rest: args.slice(i) }
}

const str = (p: Parsed, ...names: string[]) =>
  names.map((n) => p.flags[n]).find((v) => typeof v === 'string') as string | undefined
const bool = (p: Parsed, ...names: string[]) => names.some((n) => p.flags[n] === true)

function needId(rest: string[], command: string, max = 1): string {
  if (rest.length === 0) throw new OciError(`"${command}" requires a container id`, 2)
  if (rest.length > max)
    throw new OciError(
      `"${command}" takes ${max === 1 ? 'one argument' : `at most ${max} arguments`}: ${rest.join(' ')}`,
      2,
    )
  return rest[0]!
}

export async function run(argv: readonly string[], logger?: Logger): Promise<number> {
  // The log is found before the flags are checked, so that a bad flag is reported there too.
  const logged = (name: string) => {
    const i = argv.findIndex((a) => a === `--${name}` || a === `-${name}` || a.startsWith(`--${name}=`))
    return i < 0
      ? undefined
      : argv[i]!.includes('=')
        ? argv[i]!.slice(argv[i]!.indexOf('=') + 1)
        : argv[i + 1]
  }
  const logFile = logged('log')
  const log = logger ?? openLog(logFile, logged('log-format') ?? 'text')
  try {
    const g = parseFlags(argv, GLOBAL, 'global')
    if (bool(g, 'version', 'v')) {
      process.stdout.write(`vmm-oci version ${VERSION}\nspec: 1.0.2-dev\n`)
      return 0
    }
    const [command, ...tail] = g.rest
    if (bool(g, 'help', 'h') || command === undefined || command === 'help') {
      process.stdout.write(`${USAGE}\n`)
      return command === undefined && !bool(g, 'help', 'h') ? 2 : 0
    }
    const known = COMMAND_FLAGS[command]
    if (!known) throw new OciError(`no such command: ${command}`, 2)
    const p = parseFlags(tail, known, command)
    const root = str(g, 'root') ?? DEFAULT_ROOT
    const c = await import('./commands.js')
    switch (command) {
      case 'create':
      case 'run': {
        if (command === 'run') throw new OciError('run is not supported: use create, then start', 2)
        const { create } = await import('./create.js')
        await create({
          root,
          id: needId(p.rest, command),
          bundle: str(p, 'bundle', 'b'),
          pidFile: str(p, 'pid-file'),
          consoleSocket: str(p, 'console-socket'),
          seccomp: !bool(g, 'no-seccomp'),
          jail: !bool(g, 'no-jail'),
          ...(bool(g, 'no-template') ? { templateOff: 'the runtime was called with --no-template' } : {}),
          log,
        })
        return 0
      }
      case 'start':
        await c.start(root, needId(p.rest, command), log)
        return 0
      case 'state':
        process.stdout.write(c.state(root, needId(p.rest, command)))
        return 0
      case 'kill':
        await c.kill(root, needId(p.rest, command, 2), p.rest[1])
        return 0
      case 'delete':
        await c.remove(root, needId(p.rest, command), bool(p, 'force', 'f'), log)
        return 0
      case 'ps':
        process.stdout.write(c.ps(root, needId(p.rest, command), str(p, 'format', 'f') ?? 'table'))
        return 0
      case 'pause':
      case 'resume':
        await c.pause(root, needId(p.rest, command), command === 'resume')
        return 0
      case 'update': {
        const id = needId(p.rest, command)
        const file = str(p, 'resources', 'r') ?? '-'
        c.update(root, id, readFileSync(file === '-' ? 0 : file, 'utf8'))
        return 0
      }
      case 'exec': {
        const [id, ...args] = p.rest
        if (id === undefined) throw new OciError('"exec" requires a container id', 2)
        const { exec } = await import('./exec.js')
        return await exec({
          root,
          id,
          processFile: str(p, 'process', 'p'),
          args,
          tty: bool(p, 'tty', 't'),
          cwd: str(p, 'cwd'),
          env: [...((p.flags.env as string[]) ?? []), ...((p.flags.e as string[]) ?? [])],
          detach: bool(p, 'detach', 'd'),
          pidFile: str(p, 'pid-file'),
          consoleSocket: str(p, 'console-socket'),
        })
      }
      case 'list': {
        const { listContainers } = await import('./state.js')
        const ids = listContainers(root)
        if (str(p, 'format', 'f') === 'json')
          process.stdout.write(`${JSON.stringify(ids.map((id) => JSON.parse(c.state(root, id))))}\n`)
        else process.stdout.write(ids.map((id) => `${id}\n`).join(''))
        return 0
      }
      case 'template': {
        const [{ templateCommand }, { AGENT_DIR }] = await Promise.all([
          import('./template-build.js'),
          import('./create.js'),
        ])
        await templateCommand(p.rest, AGENT_DIR)
        return 0
      }
      case 'features':
        process.stdout.write(c.features(VERSION))
        return 0
    }
    return 2
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e)
    log.log('error', msg)
    if (logFile !== undefined) process.stderr.write(`vmm-oci: ${msg}\n`)
    return e instanceof OciError ? e.status : 1
  }
}

// Run as the command (not when a test imports this module).
if (process.argv[1] && import.meta.filename === (await import('node:fs')).realpathSync(process.argv[1])) {
  // exit() rather than exitCode: a sandbox just started must not hold this call open.
  process.exit(await run(process.argv.slice(2)))
}

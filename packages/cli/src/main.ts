#!/usr/bin/env node
// The `vmm` command. Startup time is part of boot time. Core is imported as the one module
// `@vmm/core`, which `pnpm build` makes a single-file bundle (packages/core/scripts/build-dist.mjs):
// plugins import @vmm/core and get that same module (Node resolves the workspace link to the same
// file), so a run reads and compiles core once; every import of it here is dynamic, so `--help`
// loads nothing; ajv is loaded only for plugin schemas and nothing loads a hypervisor before `run`
// needs one.

import { parseArgs } from 'node:util'
import { EXIT_HOST_FAILURE, EXIT_OK, EXIT_USAGE } from './exit-codes.js'
import { trimProcessHeap, tuneProcessHeap } from './heap.js'
import { overrideTexts, RESTORE_OVERRIDE_OPTIONS } from './restore-options.js'

const USAGE = `usage: vmm <command> [options]

commands:
  validate <manifest> [--print]          check a manifest; --print shows the effective machine
  graph <manifest> [--format text|dot|svg]   the component graph
  schema [manifest]                      the manifest JSON Schema, for editors; with a
                                         manifest, its plugins' component types too
  run <manifest> [--hypervisor <module>] [--timings] [--shutdown-timeout <s>] [--qmp <socket>]
      [--no-seccomp] [--no-jail] [--jail-cgroup <file>=<value>]... [--jail-rlimit <name>=<n>[:<hard>]]...
      [--jail-netns <path>]
                                         run the machine; exits with the guest's code;
                                         --timings: startup milestones and per-component times;
                                         SIGTERM asks the guest to shut down (ACPI power
                                         button, keyboard Power key) and stops it after
                                         --shutdown-timeout seconds (default 30) or a second
                                         SIGTERM; SIGINT stops it at once;
                                         --qmp: serve QMP on a Unix socket (or manifest control.qmp);
                                         --no-seccomp: no system call filters (on by default);
                                         --no-jail: not confined (by default, as root, the VMM
                                         runs in a jail of its own and drops to an unprivileged
                                         uid before the guest starts; README "Sandboxing");
                                         --jail-cgroup, --jail-rlimit, --jail-netns: that jail's
                                         limits, as vmm jail's --cgroup, --rlimit, --netns
  restore <dir> [--paused] [--hypervisor <module>] [--qmp <socket>] [--no-seccomp] [--no-jail]
          [--jail-cgroup ...]... [--jail-rlimit ...]... [--jail-netns <path>]
          [--set <id>.<prop>=<value>]... [--tap|--disk|--vsock|--cid|--mac <id>=<value>]...
                                         run a machine from a snapshot directory
                                         (Machine.snapshot, QMP x-snapshot-save); --paused
                                         leaves it paused (QMP cont resumes it); --set changes
                                         a component property (a clone's TAP, disk, socket...),
                                         --tap etc. are short for it
  ctl <socket> <command> [json-args] [--json] | ctl <socket> events
                                         drive a machine over QMP (vmm ctl --help)
  jail --id <id> --uid <uid> --gid <gid> [options] -- run <manifest> [run options]
                                         run (or restore) the VMM confined: namespaces, a
                                         per-VM root, cgroups, dropped ids (vmm jail --help)
  image build|path|clean [--json] [--jobs N]
                                         the default guest (kernel + initramfs from Debian
                                         packages, cached; needs @vmm/image)

--hypervisor names a module exporting \`hypervisorProvider\` (default: @vmm/kvm, or $VMM_HYPERVISOR;
"test" is the in-process test hypervisor).`

class UsageError extends Error {}

/** Milestones for --timings, in ms since the process started (performance.now()'s origin). */
const marks: [string, number][] = []
const mark = (label: string) => void marks.push([label, performance.now()])

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'image') return image(argv.slice(1))
  if (argv[0] === 'ctl') return (await import('./ctl.js')).ctl(argv.slice(1))
  if (argv[0] === 'jail') return (await import('./jail/jail.js')).jail(argv.slice(1))
  const { values, positionals, tokens } = parseArgs({
    args: argv,
    allowPositionals: true,
    tokens: true,
    options: {
      print: { type: 'boolean' },
      format: { type: 'string', default: 'text' },
      hypervisor: { type: 'string' },
      timings: { type: 'boolean' },
      'shutdown-timeout': { type: 'string', default: '30' },
      qmp: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      paused: { type: 'boolean' },
      ...RESTORE_OVERRIDE_OPTIONS,
      'no-seccomp': { type: 'boolean' },
      'no-jail': { type: 'boolean' },
      'jail-cgroup': { type: 'string', multiple: true, default: [] },
      'jail-rlimit': { type: 'string', multiple: true, default: [] },
      'jail-netns': { type: 'string' },
    },
  })
  const [command, file, ...extra] = positionals
  if (values.help || command === undefined) {
    process.stdout.write(`${USAGE}\n`)
    return command === undefined && !values.help ? EXIT_USAGE : EXIT_OK
  }
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`)
  if (command === 'schema') {
    const { schema } = await import('./schema.js')
    process.stdout.write(await schema(file, [import.meta.filename]))
    return 0
  }
  // Confined by default (jail/default.ts); the VMM inside (VMM_JAILED=1) runs the machine itself.
  // --jail-* are the jail's (vmm jail's --cgroup, --rlimit, --netns), not passed to the VMM in it.
  const jailed = async (command: 'run' | 'restore', file: string) => {
    const limits = {
      cgroups: values['jail-cgroup'],
      rlimits: values['jail-rlimit'],
      netns: values['jail-netns'],
    }
    const { anyLimit, JAIL_LIMIT_OPTIONS, runDefaultJail } = await import('./jail/default.js')
    if (values['no-jail'] && anyLimit(limits))
      throw new UsageError(`${JAIL_LIMIT_OPTIONS.join(', ')} limit the default jail: not with --no-jail`)
    if (values['no-jail'] || process.env.VMM_JAILED) return undefined
    const dropped = new Set<number>()
    for (const t of tokens) {
      if (t.kind === 'positional') dropped.add(t.index)
      if (t.kind === 'option' && t.name.startsWith('jail-')) {
        dropped.add(t.index)
        if (t.value !== undefined && !t.inlineValue) dropped.add(t.index + 1)
      }
    }
    const options = argv.filter((_, i) => !dropped.has(i))
    return runDefaultJail(command, file, options, limits)
  }
  if (command === 'restore') {
    if (file === undefined) throw new UsageError('restore needs a snapshot directory')
    const specifier = values.hypervisor ?? process.env.VMM_HYPERVISOR ?? '@vmm/kvm'
    const { restore, parseOverrides, listenForStop } = await import('./restore.js')
    // The side that runs the machine (the jailed VMM, or --no-jail) listens for a stop from here,
    // before loading core and the hypervisor; the default jail's supervisor forwards its signals.
    const stop = values['no-jail'] || process.env.VMM_JAILED ? listenForStop() : undefined
    let overrides: Awaited<ReturnType<typeof parseOverrides>>
    try {
      overrides = await parseOverrides(overrideTexts(values))
    } catch (e) {
      throw new UsageError((e as Error).message)
    }
    const status = await jailed('restore', file)
    if (status !== undefined) return status
    return restore(file, await loadProvider(specifier, file), {
      paused: values.paused === true,
      overrides,
      qmp: values.qmp,
      seccomp: !values['no-seccomp'],
      ...(stop ? { stop } : {}),
    })
  }
  if (command !== 'validate' && command !== 'graph' && command !== 'run')
    throw new UsageError(`unknown command "${command}"`)
  if (file === undefined) throw new UsageError(`${command} needs a manifest file`)
  if (command === 'run') {
    const status = await jailed('run', file)
    if (status !== undefined) return status
  }
  const resolved = await resolve(file)
  mark('manifest read, validated and resolved (including module loading)')
  if (command === 'validate') {
    if (values.print) {
      const { printEffective } = await import('@vmm/core')
      process.stdout.write(printEffective(resolved))
    } else process.stdout.write(`${file}: ok (${resolved.components.length} components)\n`)
    return 0
  }
  if (command === 'graph') return graph(resolved, values.format ?? 'text')
  const shutdownTimeout = Number(values['shutdown-timeout'])
  if (!Number.isFinite(shutdownTimeout) || shutdownTimeout < 0)
    throw new UsageError(
      `--shutdown-timeout must be a number of seconds, not "${values['shutdown-timeout']}"`,
    )
  return run(
    resolved,
    values.hypervisor ?? process.env.VMM_HYPERVISOR ?? '@vmm/kvm',
    values.timings === true,
    shutdownTimeout,
    values.qmp ?? resolved.control.qmp,
    !values['no-seccomp'],
  )
}

async function resolve(file: string) {
  const { ComponentRegistry, registerBuiltins, readManifest, resolveManifest } = await import('@vmm/core')
  registry = registerBuiltins(new ComponentRegistry())
  return resolveManifest(readManifest(file), registry, {
    pluginsAlsoFrom: [import.meta.filename], // beside the installed command (issue 13 item 8)
  })
}

/** The types the manifest was resolved with (plugins included): hot-plug resolves against them. */
let registry: import('@vmm/core').ComponentRegistry | undefined

type Resolved = Awaited<ReturnType<typeof resolve>>

async function graph(resolved: Resolved, format: string): Promise<number> {
  const { graphDot, graphText } = await import('@vmm/core')
  if (format === 'text') process.stdout.write(graphText(resolved))
  else if (format === 'dot') process.stdout.write(graphDot(resolved))
  else if (format === 'svg') {
    const { spawnSync } = await import('node:child_process')
    const r = spawnSync('dot', ['-Tsvg'], { input: graphDot(resolved), encoding: 'utf8' })
    if (r.error) {
      const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT'
      process.stderr.write(
        missing
          ? 'vmm: --format svg needs Graphviz `dot` on PATH; install it (Debian/Ubuntu: sudo apt-get install graphviz) or use --format dot\n'
          : `vmm: running dot failed: ${r.error.message}\n`,
      )
      return 1
    }
    if (r.status !== 0) {
      process.stderr.write(`vmm: dot failed: ${r.stderr}`)
      return 1
    }
    process.stdout.write(r.stdout)
  } else throw new UsageError(`unknown graph format "${format}"; expected text, dot or svg`)
  return 0
}

async function loadProvider(specifier: string, manifestFile: string) {
  const { createRequire } = await import('node:module')
  const { pathToFileURL } = await import('node:url')
  const { resolve: resolvePath } = await import('node:path')
  if (specifier === 'test') specifier = '@vmm/core/testing'
  // Look where a user would install it: next to the manifest, then the working directory, then
  // beside this command (its dependencies: @vmm/kvm and @vmm/core's test hypervisor).
  const bases = [manifestFile, resolvePath('package.json'), import.meta.filename]
  let url: string | undefined
  for (const base of bases) {
    try {
      url = pathToFileURL(createRequire(base).resolve(specifier)).href
      break
    } catch {}
  }
  if (url === undefined) {
    throw new Error(
      `cannot load the hypervisor module "${specifier}": not found from ${manifestFile} or the working directory. ` +
        'Install @vmm/kvm (it needs Linux with /dev/kvm), or pass --hypervisor test to use the in-process test hypervisor',
    )
  }
  const mod = (await import(url)) as { hypervisorProvider?: import('@vmm/core').HypervisorProvider }
  if (typeof mod.hypervisorProvider?.open !== 'function') {
    throw new Error(`the hypervisor module "${specifier}" does not export hypervisorProvider.open()`)
  }
  return mod.hypervisorProvider
}

async function run(
  resolved: Resolved,
  specifier: string,
  timings: boolean,
  shutdownTimeout: number,
  qmp: string | undefined,
  seccomp: boolean,
): Promise<number> {
  await tuneProcessHeap()
  const provider = await loadProvider(specifier, resolved.source.file)
  const hypervisor = await provider.open()
  const { Machine, guestMessages } = await import('@vmm/core')
  mark(`hypervisor (${hypervisor.name}) opened`)
  const machine = new Machine(resolved, hypervisor, registry)
  // A signal before the guest runs stops it as soon as it has started.
  let stopWhenStarted = false
  const stopNow = () => {
    if (machine.state === 'running' || machine.state === 'paused') void machine.stop().catch(() => {})
    else stopWhenStarted = true
  }
  // SIGTERM is how a service manager asks a VM to stop: first ask the guest, as a user pressing
  // the power button would (libvirt's shutdown, QEMU's system_powerdown), and stop it only
  // if it has not powered off in time. A second SIGTERM, or SIGINT, does not wait.
  let shutdownAsked: NodeJS.Timeout | undefined
  const onSigterm = () => {
    const by = shutdownAsked === undefined ? machine.requestShutdown() : undefined
    if (by === undefined) {
      stopNow()
      return
    }
    process.stderr.write(
      `vmm: SIGTERM: asked the guest to shut down (through ${by}); stopping it in ${shutdownTimeout} s, or at the next SIGTERM\n`,
    )
    shutdownAsked = setTimeout(() => {
      process.stderr.write(`vmm: the guest did not shut down within ${shutdownTimeout} s; stopping it\n`)
      stopNow()
    }, shutdownTimeout * 1000)
  }
  process.once('SIGINT', stopNow)
  process.on('SIGTERM', onSigterm)
  let closeQmp: import('./qmp.js').QmpHandle | undefined
  let sandbox: import('./seccomp.js').SeccompHandle | undefined
  try {
    // Listening first: a bad socket path fails the run before the guest starts.
    if (qmp) closeQmp = await (await import('./qmp.js')).serveQmp(machine, qmp)
    await machine.realize()
    mark('realized: VM, RAM, vCPUs, components built')
    await machine.load()
    sandbox = await (await import('./seccomp.js')).confine(machine, seccomp)
    mark(sandbox.summary)
    await machine.start()
    mark('loaded and started: first guest instruction')
    trimProcessHeap()
    if (stopWhenStarted) stopNow()
    const result = await machine.done
    mark(`guest ended (${result.status})`)
    if (timings) {
      process.stderr.write('vmm: timings (ms since process start)\n')
      for (const [label, at] of marks) process.stderr.write(`  ${at.toFixed(1).padStart(7)}  ${label}\n`)
      for (const t of machine.timings)
        process.stderr.write(`  ${t.ms.toFixed(2).padStart(7)}  ${t.id}: ${t.phase}\n`)
    }
    if (result.code !== 0 || result.status === 'failed') process.stderr.write(`vmm: ${result.reason}\n`)
    return result.status === 'failed' && result.code === 0 ? EXIT_HOST_FAILURE : result.code
  } finally {
    clearTimeout(shutdownAsked)
    await closeQmp?.close()
    process.off('SIGINT', stopNow)
    process.off('SIGTERM', onSigterm)
    // Cleanup never replaces the run's error or its exit code: its own errors are reported after
    // it, and the hypervisor is released whatever happened (issue 13 items 4, 10).
    try {
      await machine.dispose()
    } catch (e) {
      const all = e instanceof AggregateError ? e.errors : [e]
      for (const x of all)
        process.stderr.write(`vmm: while cleaning up: ${(x as Error)?.message ?? String(x)}\n`)
    } finally {
      hypervisor.dispose()
      guestMessages.flush() // the counts of guest-triggered messages still held back
      sandbox?.finish() // last, so the record mode sees the clean-up's calls too
    }
  }
}

/** `vmm image ...` is @vmm/image's command, found where a user would install it (like a hypervisor). */
async function image(argv: string[]): Promise<number> {
  const { createRequire } = await import('node:module')
  const { pathToFileURL } = await import('node:url')
  const { resolve: resolvePath } = await import('node:path')
  for (const base of [resolvePath('package.json'), import.meta.filename]) {
    let url: string
    try {
      url = pathToFileURL(createRequire(base).resolve('@vmm/image')).href
    } catch {
      continue
    }
    const mod = (await import(url)) as { runImageCommand(argv: readonly string[]): Promise<number> }
    return mod.runImageCommand(argv)
  }
  throw new Error('vmm image needs the @vmm/image package (not found from the working directory)')
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (e: unknown) => {
    // A throw of a non-Error (null, a string) still reads as a sentence.
    const message =
      e instanceof Error
        ? e.message
        : `${e === null || e === undefined ? String(e) : JSON.stringify(e)} was thrown`
    if (
      e instanceof UsageError ||
      (e as Error)?.name === 'UsageError' ||
      ((e as Error)?.name === 'TypeError' && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))
    ) {
      process.stderr.write(`vmm: ${message}\n\n${USAGE}\n`)
      process.exitCode = EXIT_USAGE
    } else if ((e as Error)?.name === 'ManifestError') {
      process.stderr.write(`${message}\n`)
      process.exitCode = EXIT_USAGE
    } else {
      process.stderr.write(`vmm: ${message}\n`)
      process.exitCode = EXIT_HOST_FAILURE
    }
  },
)

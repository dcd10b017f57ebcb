// What a jailed run needs bound in: the machine's own files (the manifest and its includes, or the
// snapshot directory; every path a component names; the control socket's directory), the packages
// the VMM imports (the command, the plugins the manifest loads, the hypervisor module, and their
// dependencies), node and its libraries. The manifest is resolved here as `vmm run` resolves it
// (plugins are loaded to read their schemas: plugins are code the operator chose, as for `vmm
// validate`), so a manifest error is answered before anything is made.
import { chownSync, existsSync, lstatSync, readFileSync, statSync, unlinkSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, isAbsolute, join, resolve as resolvePath } from 'node:path'
import { parseArgs } from 'node:util'
import type { ComponentOverride, ResolvedManifest } from '@vmm/core'
import {
  type Bind,
  type Link,
  lookupPackage,
  nativeAddons,
  nodeRuntime,
  packageClosure,
  packageRoot,
} from '@vmm/host/jail'
import { parse } from 'yaml'
import { overrideTexts, RESTORE_OVERRIDE_OPTIONS } from '../restore-options.js'
import { type JailOptions, JailUsageError } from './args.js'
import { manifestBinds, manifestPaths, permits } from './manifest-paths.js'

export interface MachineNeeds {
  readonly binds: readonly Bind[]
  readonly links: readonly Link[]
  readonly ramBytes: number
  /** The paths the VMM will make (sockets, log files), with the inode each has now (if any). */
  readonly created: readonly MadePath[]
  /** The writable shares (drop-late only): their components, "<id>.<property>". */
  readonly shares: readonly string[]
  /** Whether a component opens a TAP (CAP_NET_ADMIN, for a VMM that keeps root). */
  readonly tap: boolean
  /** The VMM's options (JailOptions.vmmArgs) as it is to get them: restore overrides' paths absolute. */
  readonly vmmArgs: readonly string[]
}

export interface MadePath {
  readonly path: string
  readonly ino?: number
}

/**
 * After a drop-late run, what the VMM made at `created` (paths it makes: sockets, log files) in
 * its idmapped directories (vmm-jail-idmap.c): a socket that is not the file that was there
 * before the run is the VMM's, which it could not always unlink after its drop (unix(7): a socket
 * file stays until unlinked); it is removed. A new file owned by the jail's uid (made by the VMM
 * as root before its drop, written as that uid through the idmap) is given to its directory's
 * owner, as it would be without the jail; its content is left alone.
 */
export function tidyMade(created: readonly MadePath[], jailUid: number): void {
  for (const { path, ino } of created) {
    try {
      const st = lstatSync(path)
      if (st.isSocket() && st.ino !== ino) unlinkSync(path)
      else if (st.isFile() && ino === undefined && st.uid === jailUid) {
        const dir = statSync(dirname(path))
        chownSync(path, dir.uid, dir.gid)
      }
    } catch {}
  }
}

/** The VMM's options, as parseArgs reads them without knowing them all (args.ts does the same). */
const vmmOptions = (vmmArgs: readonly string[]) =>
  parseArgs({
    args: [...vmmArgs],
    allowPositionals: true,
    strict: false,
    tokens: true,
    options: { ...RESTORE_OVERRIDE_OPTIONS, qmp: { type: 'string' }, hypervisor: { type: 'string' } },
  })

interface Overrides {
  /** Each as `<component>.<property>=<value>` text, in the order the VMM applies them. */
  readonly texts: readonly string[]
  readonly parsed: readonly ComponentOverride[]
}

/**
 * `vmm restore`'s overrides (--set, --disk, ...) among the VMM's options, read as the VMM reads
 * them (restore-options.ts): a restore builds its machine from the snapshot's manifest with them
 * applied, so the jail must hold what they name, not what the snapshot named.
 */
async function restoreOverrides(vmmArgs: readonly string[]): Promise<Overrides> {
  const { parseOverride } = await import('@vmm/core')
  try {
    const texts = overrideTexts(vmmOptions(vmmArgs).values)
    return { texts, parsed: texts.map(parseOverride) }
  } catch (e) {
    throw new JailUsageError((e as Error).message)
  }
}

/**
 * The VMM's options with every override given as `--set`, and one that names a relative path
 * with the absolute path it was resolved to here (against this working directory, as the VMM
 * does): the VMM in the jail may run elsewhere (jail.ts: in our directory only if a bind holds it).
 */
function absoluteOverrides(vmmArgs: readonly string[], o: Overrides, resolved: ResolvedManifest): string[] {
  const texts = o.parsed.map(({ component, property, value }, i) => {
    if (typeof value !== 'string' || isAbsolute(value)) return o.texts[i]!
    let at: unknown = resolved.components.find((c) => c.id === component)?.config
    for (const key of property.split('.')) at = (at as Record<string, unknown> | undefined)?.[key]
    return at === resolvePath(value) ? `${component}.${property}=${at}` : o.texts[i]!
  })
  if (texts.every((t, i) => t === o.texts[i])) return [...vmmArgs]
  const drop = new Set<number>()
  for (const t of vmmOptions(vmmArgs).tokens)
    if (t.kind === 'option' && t.name in RESTORE_OVERRIDE_OPTIONS) {
      drop.add(t.index)
      if (t.inlineValue === false) drop.add(t.index + 1)
    }
  return [...vmmArgs.filter((_, i) => !drop.has(i)), ...texts.flatMap((t) => ['--set', t])]
}

/** The machine the VMM will build, and its options as the VMM in the jail is to get them. */
async function resolveMachine(
  o: JailOptions,
  cliMain: string,
): Promise<{ resolved: ResolvedManifest; vmmArgs: readonly string[] }> {
  const {
    ComponentRegistry,
    registerBuiltins,
    readManifest,
    resolveManifest,
    manifestFromObject,
    applyOverrides,
    loadSnapshot,
    resolveRestoredManifest,
  } = await import('@vmm/core')
  const registry = registerBuiltins(new ComponentRegistry())
  if (o.command === 'run') {
    if (!o.dropLate && !existsSync(o.target))
      throw new JailUsageError(`the manifest ${o.target} does not exist`)
    const resolved = await resolveManifest(readManifest(o.target), registry, { pluginsAlsoFrom: [cliMain] })
    return { resolved, vmmArgs: o.vmmArgs }
  }
  const overrides = await restoreOverrides(o.vmmArgs)
  // The default jail reads the snapshot and applies the overrides as Machine.restore does, so a
  // bad snapshot or a bad override is answered with the restore's own error.
  const restored = (resolved: ResolvedManifest) => ({
    resolved,
    vmmArgs: absoluteOverrides(o.vmmArgs, overrides, resolved),
  })
  if (o.dropLate)
    return restored(await resolveRestoredManifest(loadSnapshot(o.target), overrides.parsed, registry))
  const stateFile = join(o.target, 'state.json')
  if (!existsSync(stateFile))
    throw new JailUsageError(`${o.target} is not a snapshot directory: ${stateFile} does not exist`)
  // The pinned manifest, read as Machine.restore reads it (the restore checks the rest itself).
  let data: Record<string, unknown>
  try {
    data = parse((JSON.parse(readFileSync(stateFile, 'utf8')) as { manifest: string }).manifest)
  } catch (e) {
    throw new JailUsageError(`${stateFile}: $.manifest is not a pinned manifest (${(e as Error).message})`)
  }
  try {
    data = applyOverrides(data, overrides.parsed)
  } catch (e) {
    throw new JailUsageError((e as Error).message)
  }
  return restored(
    await resolveManifest(manifestFromObject(data, `${stateFile} ($.manifest)`), registry, {
      restoring: true,
    }),
  )
}

/** A module specifier's package name: "@vmm/core/testing" -> "@vmm/core". */
function packageName(specifier: string): string {
  const parts = specifier.split('/')
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!
}

export async function machineNeeds(o: JailOptions, cliMain: string): Promise<MachineNeeds> {
  const { resolved, vmmArgs } = await resolveMachine(o, cliMain)
  const binds: Bind[] = []
  const links: Link[] = []
  const readable = (what: string, file: string) => {
    if (o.dropLate) return // read as root, before the drop
    if (!permits(statSync(file), o.uid, o.gid, 4))
      throw new JailUsageError(
        `${what} ${file} is not readable by the jailed VMM (uid ${o.uid}, gid ${o.gid})`,
      )
  }
  if (o.command === 'run') {
    for (const f of resolved.source.files) {
      readable('the manifest', f)
      binds.push({ source: f, target: f, readOnly: true })
    }
  } else {
    for (const f of ['snapshot.json', 'state.json', 'memory'])
      readable('the snapshot file', join(o.target, f))
    binds.push({ source: o.target, target: o.target, readOnly: true })
  }
  const paths = manifestPaths(resolved, o.qmp ?? resolved.control.qmp)
  // A writable share needs root's chown/mknod on its tree: the VMM then keeps root, with only
  // SHARE_CAPS (default.ts), and its binds need no idmap.
  const shares = o.dropLate ? paths.filter((p) => p.share).map((p) => p.owner) : []
  binds.push(
    ...manifestBinds(paths, o.uid, o.gid, o.dropLate === true, o.dropLate === true && shares.length === 0),
  )
  const created = paths
    .filter((p) => p.access === 'create')
    .map((p) => {
      try {
        return { path: p.path, ino: lstatSync(p.path).ino }
      } catch {
        return { path: p.path }
      }
    })

  // The packages: where the VMM's loader will look for each (the manifest's directory, the
  // working directory, the command's own), the first that has it.
  const cliRoot = packageRoot(cliMain)!
  const roots = [cliRoot]
  const find = (specifier: string, fromFile: string, what: string) => {
    if (specifier.startsWith('.') || isAbsolute(specifier)) {
      const file = createRequire(fromFile).resolve(specifier)
      const pkg = packageRoot(file)
      // A plugin file outside any package is bound alone; one inside a package brings the package.
      if (pkg === undefined) binds.push({ source: file, target: file, readOnly: true })
      else roots.push(pkg)
      return
    }
    for (const from of [dirname(fromFile), process.cwd(), cliRoot]) {
      const found = lookupPackage(packageName(specifier), from)
      if (found) {
        roots.push(found.dir)
        links.push(...found.links)
        return
      }
    }
    // The default jail leaves it to the VMM inside, which says it as `vmm run` does.
    if (!o.dropLate)
      throw new JailUsageError(
        `${what} "${specifier}" cannot be found from ${fromFile}, the working directory or vmm`,
      )
  }
  for (const p of resolved.source.plugins) find(p.name, p.fromFile, 'the plugin')
  const hypervisor = o.hypervisor ?? process.env.VMM_HYPERVISOR ?? '@vmm/kvm'
  find(
    hypervisor === 'test' ? '@vmm/core/testing' : hypervisor,
    resolved.source.file,
    'the hypervisor module',
  )

  const closure = packageClosure(roots)
  for (const d of closure.dirs) binds.push({ source: d, target: d, readOnly: true })
  links.push(...closure.links)
  binds.push(...nodeRuntime(closure.dirs.flatMap(nativeAddons)))
  const tap = resolved.components.some((c) => typeof c.config.tap === 'string')
  return { binds, links, ramBytes: resolved.machine.memory, created, shares, tap, vmmArgs }
}

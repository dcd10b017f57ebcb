// The host paths a resolved manifest names (every `vmmPath` property of every component, found
// through the component types' schemas, plus the control socket), and how the jail must hold each:
//   - a file or directory that exists: bound read-only, or read-write when its node says
//     `readOnly: false` (a disk the guest writes: virtio-blk's convention);
//   - a path the VMM makes (it does not exist yet, it is a socket, or its node picks a `file` or
//     `socket` back end, as serial `console:` and virtio-console `backend:` do): its directory is
//     bound read-write, at its own path, so the socket lands where the caller looks for it.
// Everything keeps its own absolute path inside the jail: the manifest means the same there, and
// nothing in it needs rewriting.
import { lstatSync, realpathSync, type Stats, statSync } from 'node:fs'
import { dirname } from 'node:path'
import type { JsonSchema, ResolvedManifest } from '@vmm/core'
import { type Bind, checkPlanPath, JailUsageError, permits } from '@vmm/host/jail'

export interface ManifestPath {
  /** Who names it: "<component id>.<property>" or "control.qmp". */
  readonly owner: string
  readonly path: string
  readonly access: 'read' | 'read-write' | 'create'
  /**
   * A directory the guest writes with its own owners and modes (a virtio-9p share that is not
   * `readonly`: its server chowns, chmods and mknods on the host tree as the guest asks).
   */
  readonly share?: boolean
}

/** Every string under a `vmmPath` schema in `data`, with its property path. */
function collect(schema: JsonSchema, data: unknown, at: string, out: [string, string][]): void {
  if (schema.vmmPath === true) {
    if (typeof data === 'string') out.push([at, data])
    return
  }
  if (typeof data !== 'object' || data === null) return
  if (Array.isArray(data)) {
    const items = schema.items as JsonSchema | undefined
    if (items && typeof items === 'object') data.forEach((v, i) => void collect(items, v, `${at}[${i}]`, out))
    return
  }
  const props = (schema.properties ?? {}) as Record<string, JsonSchema>
  const extra = schema.additionalProperties
  for (const [k, v] of Object.entries(data)) {
    const s = props[k] ?? (typeof extra === 'object' ? (extra as JsonSchema) : undefined)
    if (s) collect(s, v, at === '' ? k : `${at}.${k}`, out)
  }
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path).isSymbolicLink() ? statSync(path) : lstatSync(path)
  } catch {
    return undefined
  }
}

/** The paths `resolved` names, classified (see the file comment). */
export function manifestPaths(resolved: ResolvedManifest, qmp: string | undefined): ManifestPath[] {
  const out: ManifestPath[] = []
  for (const c of resolved.components) {
    const found: [string, string][] = []
    collect(c.type.schema as JsonSchema, c.config, '', found)
    const makesFiles = Object.values(c.config).some((v) => v === 'socket' || v === 'file')
    // virtio-9p's convention: `readonly` (default false) on a directory the guest mounts.
    const props = ((c.type.schema as JsonSchema).properties ?? {}) as Record<string, unknown>
    const writableShare = 'readonly' in props && c.config.readonly !== true
    for (const [prop, path] of found) {
      const st = statOrUndefined(path)
      if (writableShare && st?.isDirectory()) {
        out.push({ owner: `${c.id}.${prop}`, path, access: 'read-write', share: true })
        continue
      }
      const access =
        st === undefined || st.isSocket() || makesFiles
          ? 'create'
          : c.config.readOnly === false
            ? 'read-write'
            : 'read'
      out.push({ owner: `${c.id}.${prop}`, path, access })
    }
  }
  if (qmp !== undefined) out.push({ owner: 'control.qmp', path: qmp, access: 'create' })
  return out
}

export { permits }

/** The default jail's read-write binds are idmapped to their owner (runtime.ts Bind.idmap). */
const idmapOf = (st: Stats, on: boolean) => (on ? { idmap: { uid: st.uid, gid: st.gid } } : {})

/**
 * The binds for `paths`, after checking that the jail's uid/gid can use each as the VMM will:
 * a missing input or a directory it cannot write is answered here, naming the component, rather
 * than as a permission error from inside the jail. `asRoot` (the default jail: the VMM opens and
 * makes them as root, before it drops its ids): no access check, only that they are there.
 */
export function manifestBinds(
  paths: readonly ManifestPath[],
  uid: number,
  gid: number,
  asRoot = false,
  idmap = asRoot,
): Bind[] {
  const binds: Bind[] = []
  for (const p of paths) {
    checkPlanPath(p.owner, p.path)
    if (p.access === 'create') {
      const dir = dirname(p.path)
      const st = statOrUndefined(dir)
      if (st === undefined || !st.isDirectory())
        throw new JailUsageError(`${p.owner}: the directory of ${p.path} does not exist`)
      if (dir === '/')
        throw new JailUsageError(
          `${p.owner}: ${p.path} is in /; the jail binds a socket's directory in, so give it a directory of its own`,
        )
      if (!asRoot && !permits(st, uid, gid, 3))
        throw new JailUsageError(
          `${p.owner}: the jailed VMM (uid ${uid}, gid ${gid}) cannot create ${p.path}: its directory is not writable by it (chown it or pick a directory of the VMM's own)`,
        )
      binds.push({ source: realpathSync(dir), target: dir, readOnly: false, ...idmapOf(st, idmap) })
      continue
    }
    const st = statSync(p.path) // exists: classified from it
    const bits = p.access === 'read-write' ? 6 : 4
    if (!asRoot && !st.isDirectory() && !permits(st, uid, gid, bits))
      throw new JailUsageError(
        `${p.owner}: the jailed VMM (uid ${uid}, gid ${gid}) cannot ${bits === 6 ? 'read and write' : 'read'} ${p.path} (its mode is ${(st.mode & 0o777).toString(8)}, owner ${st.uid}:${st.gid})`,
      )
    binds.push({
      source: realpathSync(p.path),
      target: p.path,
      readOnly: p.access === 'read',
      ...(p.access === 'read' ? {} : idmapOf(st, idmap)),
    })
  }
  return binds
}

// The README's dependency rule, checked from the package manifests and the imports so that it
// cannot drift again: dependencies point one way, core <- host, kvm, virtio, pci <- boards <-
// cli and examples, and no package but @vmm/kvm itself and the CLI names @vmm/kvm. Runs without
// /dev/kvm (a unit test): it reads files only.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'

const root = join(import.meta.dirname, '..')

/**
 * Which workspace packages each package may depend on (dependencies and peerDependencies) and
 * import from its src. A package absent from the tree is skipped; a package present but missing
 * here fails, so a new package must take its place in the layers.
 */
const ALLOWED: Record<string, readonly string[]> = {
  '@vmm/core': [],
  // Host syscalls that are not KVM: TAP, fallocate, madvise.
  '@vmm/host': ['@vmm/core'],
  '@vmm/kvm': ['@vmm/core', '@vmm/host'],
  '@vmm/pci': ['@vmm/core'],
  // virtio-pci is virtio's transport over pci's configuration space: a sideways edge in one layer.
  '@vmm/virtio': ['@vmm/core', '@vmm/host', '@vmm/pci'],
  // The default guest's builder: stands alone.
  '@vmm/image': [],
  // The control plane: verbs over a Machine, QMP.
  '@vmm/control': ['@vmm/core'],
  '@vmm/board-micro': ['@vmm/core', '@vmm/host', '@vmm/pci', '@vmm/virtio'],
  // The standard board reuses the micro board's devices.
  '@vmm/board-standard': ['@vmm/core', '@vmm/host', '@vmm/pci', '@vmm/virtio', '@vmm/board-micro'],
  // The command picks the hypervisor: the one place besides @vmm/kvm that names it.
  // The OCI runtime picks the hypervisor for its sandboxes, as the command does.
  '@vmm/oci': ['@vmm/core', '@vmm/host', '@vmm/kvm', '@vmm/virtio', '@vmm/board-micro', '@vmm/image'],
  '@vmm/cli': [
    '@vmm/core',
    '@vmm/control',
    '@vmm/host',
    '@vmm/kvm',
    '@vmm/pci',
    '@vmm/virtio',
    '@vmm/board-micro',
    '@vmm/board-standard',
    '@vmm/image',
  ],
}

/** What examples (applications and plugins outside packages/) may use: everything but @vmm/kvm. */
const EXAMPLE_ALLOWED = [
  '@vmm/core',
  '@vmm/host',
  '@vmm/pci',
  '@vmm/virtio',
  '@vmm/board-micro',
  '@vmm/board-standard',
  '@vmm/cli',
]

interface Manifest {
  name: string
  dependencies?: Record<string, string>
  peerDependencies?: Record<string, string>
  devDependencies?: Record<string, string>
}

interface Workspace {
  dir: string
  kind: 'package' | 'example'
  manifest: Manifest
}

function workspaces(): Workspace[] {
  const out: Workspace[] = []
  for (const [parent, kind] of [
    ['packages', 'package'],
    ['examples', 'example'],
  ] as const) {
    for (const name of readdirSync(join(root, parent))) {
      const file = join(root, parent, name, 'package.json')
      if (!existsSync(file)) continue
      out.push({ dir: join(parent, name), kind, manifest: JSON.parse(readFileSync(file, 'utf8')) })
    }
  }
  return out
}

const all = workspaces()
const names = new Set(all.map((w) => w.manifest.name))

function allowedFor(w: Workspace): readonly string[] {
  if (w.kind === 'example')
    return [...EXAMPLE_ALLOWED, ...all.filter((o) => o.kind === 'example').map((o) => o.manifest.name)]
  const allowed = ALLOWED[w.manifest.name]
  if (!allowed) throw new Error(`${w.dir}: ${w.manifest.name} has no place in the dependency table`)
  return allowed
}

function sourceFiles(dir: string): string[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return sourceFiles(path)
    return /\.(ts|mts|js|mjs)$/.test(name) && !name.endsWith('.d.ts') ? [path] : []
  })
}

/** Static imports and exports with a module specifier, and import() of a string literal. */
const IMPORT =
  /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*\(?\s*['"]([^'"]+)['"]/g

/** The workspace package an import specifier names ('@vmm/kvm/testing' -> '@vmm/kvm'), if any. */
function workspacePackage(specifier: string): string | undefined {
  const parts = specifier.split('/')
  const name = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!
  return names.has(name) ? name : undefined
}

function imports(w: Workspace): { file: string; line: string; target: string }[] {
  const out: { file: string; line: string; target: string }[] = []
  for (const path of sourceFiles(join(root, w.dir, 'src'))) {
    const file = relative(root, path)
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      if (/^\s*(\/\/|\*)/.test(line)) continue // comments
      for (const m of line.matchAll(IMPORT)) {
        const target = workspacePackage(m[1] ?? m[2]!)
        if (target && target !== w.manifest.name) out.push({ file, line: line.trim(), target })
      }
    }
  }
  return out
}

describe('the dependency rule (README: dependencies point one way)', () => {
  it('finds the packages it checks', () => {
    expect(names.has('@vmm/core')).toBe(true)
    expect(names.has('@vmm/kvm')).toBe(true)
    expect(imports(all.find((w) => w.manifest.name === '@vmm/pci')!).length).toBeGreaterThan(0)
  })

  it.each(all.map((w) => [w.dir, w] as const))('%s: depends only on what its layer allows', (_dir, w) => {
    const allowed = allowedFor(w)
    const runtime = { ...w.manifest.dependencies, ...w.manifest.peerDependencies }
    const wrong = Object.keys(runtime).filter((d) => names.has(d) && !allowed.includes(d))
    expect(wrong, `${w.dir}/package.json`).toEqual([])
  })

  it.each(all.map((w) => [w.dir, w] as const))(
    '%s: imports only packages its layer allows and its manifest declares',
    (_dir, w) => {
      const allowed = allowedFor(w)
      const declared = new Set(Object.keys({ ...w.manifest.dependencies, ...w.manifest.peerDependencies }))
      const wrong = imports(w)
        .filter(({ target }) => !allowed.includes(target) || !declared.has(target))
        .map(({ file, line }) => `${file}: ${line}`)
      expect(wrong).toEqual([])
    },
  )

  it('lets no package but @vmm/kvm, @vmm/cli and @vmm/oci name @vmm/kvm outside its devDependencies', () => {
    const naming = all
      .filter((w) => {
        const runtime = { ...w.manifest.dependencies, ...w.manifest.peerDependencies }
        return '@vmm/kvm' in runtime
      })
      .map((w) => w.manifest.name)
      .filter((n) => n !== '@vmm/kvm' && n !== '@vmm/cli' && n !== '@vmm/oci')
    expect(naming).toEqual([])
  })
})

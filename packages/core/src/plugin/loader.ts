import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { ComponentType } from '../component/component-type.js'
import type { ComponentRegistry } from '../component/registry.js'

/** The plugin API this version of core implements. A plugin exports the version it was written for. */
export const PLUGIN_API_VERSION = 1

/**
 * What a plugin package's main module exports:
 *   export const vmmPluginApi = 1
 *   export function register(registry) { registry.register(myDeviceType) }
 */
export interface VmmPlugin {
  readonly vmmPluginApi: number
  register(registry: PluginRegistry): void
}

/** The part of the registry a plugin sees. */
export interface PluginRegistry {
  register<C>(type: ComponentType<C>): void
}

export type PluginErrorCode =
  | 'NOT_FOUND'
  | 'LOAD_FAILED'
  | 'NOT_A_PLUGIN'
  | 'API_VERSION'
  | 'REGISTER_FAILED'
  | 'DUPLICATE_TYPE'

export class PluginError extends Error {
  override readonly name = 'PluginError'
  constructor(
    readonly code: PluginErrorCode,
    readonly plugin: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`plugin "${plugin}": ${message}`, options)
  }
}

function reason(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0]! : String(e)
}

/**
 * Loads plugin `name` as Node would resolve it from `fromFile` (the manifest naming it), checks its
 * API version and lets it register its component types under its own name. A plugin is all or
 * nothing: if one of its types clashes, none of them is registered.
 */
export async function loadPlugin(
  name: string,
  fromFile: string,
  registry: ComponentRegistry,
  /** Further files to resolve from (the `vmm` command's own), after the manifest's and the working directory's. */
  alsoFrom: readonly string[] = [],
): Promise<void> {
  // Where a user would install it, as `--hypervisor` is looked up: next to the manifest (or the
  // file that names the plugin), the working directory, then beside the installed framework (the
  // command, and this module), so a copied example finds the boards installed with vmm.
  const bases = [fromFile, join(process.cwd(), 'package.json'), ...alsoFrom, import.meta.filename]
  let resolved: string | undefined
  let cause: unknown
  for (const base of bases) {
    try {
      resolved = createRequire(base).resolve(name)
      break
    } catch (e) {
      cause ??= e
    }
  }
  if (resolved === undefined) {
    const places = [fromFile, `the working directory ${process.cwd()}`, ...alsoFrom.map((f) => dirname(f))]
    throw new PluginError(
      'NOT_FOUND',
      name,
      `cannot be found from ${places.join(', ')} or the installed framework (is it installed?)`,
      { cause },
    )
  }
  let mod: Partial<VmmPlugin>
  try {
    mod = (await import(pathToFileURL(resolved).href)) as Partial<VmmPlugin>
  } catch (cause) {
    throw new PluginError('LOAD_FAILED', name, `failed to load: ${reason(cause)}`, { cause })
  }
  if (typeof mod.register !== 'function' || typeof mod.vmmPluginApi !== 'number') {
    throw new PluginError(
      'NOT_A_PLUGIN',
      name,
      'is not a vmm plugin: it must export `vmmPluginApi` and `register`',
    )
  }
  if (mod.vmmPluginApi !== PLUGIN_API_VERSION) {
    throw new PluginError(
      'API_VERSION',
      name,
      `is written for plugin API ${mod.vmmPluginApi}; this vmm implements API ${PLUGIN_API_VERSION}`,
    )
  }
  const types: ComponentType[] = []
  try {
    mod.register({ register: (t) => void types.push(t as unknown as ComponentType) })
  } catch (cause) {
    throw new PluginError('REGISTER_FAILED', name, `register() threw: ${reason(cause)}`, { cause })
  }
  for (const t of types) {
    const existing = registry.origin(t.name)
    if (existing !== undefined) {
      throw new PluginError(
        'DUPLICATE_TYPE',
        name,
        `registers component type "${t.name}", which ${existing} already registers`,
      )
    }
    if (types.filter((u) => u.name === t.name).length > 1) {
      throw new PluginError('DUPLICATE_TYPE', name, `registers component type "${t.name}" twice`)
    }
  }
  for (const t of types) registry.register(t, name)
}

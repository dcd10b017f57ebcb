// A third-party-style vmm plugin: it depends only on the published API of @vmm/core.
import type { PLUGIN_API_VERSION, PluginRegistry } from '@vmm/core'
import { debugExitType } from './debug-exit.js'

export { DebugExit, type DebugExitConfig, debugExitType } from './debug-exit.js'

/** The plugin API this plugin was written for; vmm refuses plugins written for another. */
export const vmmPluginApi: typeof PLUGIN_API_VERSION = 1

export function register(registry: PluginRegistry): void {
  registry.register(debugExitType)
}

// `vmm schema [manifest]`: the manifest JSON Schema for editors. With a manifest it describes the
// component types the manifest's plugins register as well as the built-in ones, so an editor given
// it accepts that manifest (issue 13 item 3).
import {
  ComponentRegistry,
  loadPlugin,
  ManifestError,
  manifestSchema,
  readManifest,
  registerBuiltins,
} from '@vmm/core'

export async function schema(file: string | undefined, alsoFrom: readonly string[]): Promise<string> {
  const registry = registerBuiltins(new ComponentRegistry())
  if (file !== undefined) {
    const source = readManifest(file)
    const failures: ConstructorParameters<typeof ManifestError>[0][number][] = []
    for (const p of source.plugins) {
      try {
        await loadPlugin(p.name, p.fromFile, registry, alsoFrom)
      } catch (e) {
        failures.push({ ...p.position, path: '/plugins', message: (e as Error).message })
      }
    }
    // A schema without a plugin's types would reject every component of that plugin: say so instead.
    if (failures.length > 0) throw new ManifestError(failures)
  }
  return `${JSON.stringify(manifestSchema(registry), null, 2)}\n`
}

import { createRequire } from 'node:module'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'
import { ComponentRegistry } from '../src/component/registry.js'
import { registerBuiltins } from '../src/components/builtins.js'
import { ManifestError } from '../src/manifest/diagnostics.js'
import { resolveManifest } from '../src/manifest/resolve.js'
import { readManifest } from '../src/manifest/source.js'
import { loadPlugin, PluginError } from '../src/plugin/loader.js'
import { fixture } from './fixtures.js'

// Fixture plugins are plain ESM packages in a temporary node_modules; the good one takes
// ContainerModule from the same InversifyJS file core uses.
const inversifyUrl = pathToFileURL(createRequire(import.meta.url).resolve('inversify')).href

function pkg(name: string, main: string): Record<string, string> {
  return {
    [`node_modules/${name}/package.json`]: JSON.stringify({
      name,
      type: 'module',
      exports: { '.': './index.js' },
    }),
    [`node_modules/${name}/index.js`]: main,
  }
}

const typeSource = (name: string) => `{
  name: '${name}', description: 'a plugin type', schema: { properties: { level: { type: 'integer' } } },
  module: new ContainerModule(({ bind }) => bind(Symbol.for('@vmm/core:Component')).toConstantValue({ ok: true })),
}`

const plugins = {
  ...pkg(
    'vmm-plugin-good',
    `import { ContainerModule } from '${inversifyUrl}'
export const vmmPluginApi = 1
export function register(registry) { registry.register(${typeSource('good-device')}) }`,
  ),
  ...pkg('vmm-plugin-future', `export const vmmPluginApi = 2\nexport function register() {}`),
  ...pkg('vmm-plugin-crash', `throw new Error('cannot initialise')`),
  ...pkg(
    'vmm-plugin-bad-register',
    `export const vmmPluginApi = 1\nexport function register() { throw new TypeError('oops') }`,
  ),
  ...pkg(
    'vmm-plugin-clash',
    `import { ContainerModule } from '${inversifyUrl}'
export const vmmPluginApi = 1
export function register(registry) { registry.register(${typeSource('mine')}); registry.register(${typeSource('debugcon')}) }`,
  ),
  ...pkg('vmm-plugin-empty', `export const something = 1`),
  ...pkg(
    'vmm-plugin-bad-schema',
    `import { ContainerModule } from '${inversifyUrl}'
export const vmmPluginApi = 1
export function register(registry) {
  registry.register({ ...${typeSource('odd-device')}, schema: { properties: { level: { type: 'integr' } } } })
}`,
  ),
}

async function load(name: string, registry = registerBuiltins(new ComponentRegistry())) {
  const dir = fixture(plugins)
  try {
    await loadPlugin(name, join(dir, 'machine.yaml'), registry)
  } catch (e) {
    expect(e).toBeInstanceOf(PluginError)
    return {
      code: (e as PluginError).code,
      message: (e as PluginError).message.replaceAll(dir, '<dir>'),
      registry,
    }
  }
  return { code: undefined, message: '', registry }
}

describe('plugin loader', () => {
  it('registers the types of a good plugin under its name', async () => {
    const { code, registry } = await load('vmm-plugin-good')
    expect(code).toBeUndefined()
    expect(registry.origin('good-device')).toBe('vmm-plugin-good')
  })

  it('resolves a plugin not beside the manifest from the further places it is given', async () => {
    const installed = fixture(plugins) // where vmm and its plugins are installed
    const elsewhere = fixture({ 'machine.yaml': '' }) // a copied example, no node_modules
    const registry = registerBuiltins(new ComponentRegistry())
    await expect(loadPlugin('vmm-plugin-good', join(elsewhere, 'machine.yaml'), registry)).rejects.toThrow(
      /cannot be found from .*machine\.yaml, the working directory/,
    )
    await loadPlugin('vmm-plugin-good', join(elsewhere, 'machine.yaml'), registry, [
      join(installed, 'package.json'),
    ])
    expect(registry.origin('good-device')).toBe('vmm-plugin-good')
  })

  it('names the plugin in every error', async () => {
    expect(await load('vmm-plugin-missing')).toMatchObject({
      code: 'NOT_FOUND',
      message: `plugin "vmm-plugin-missing": cannot be found from <dir>/machine.yaml, the working directory ${process.cwd()} or the installed framework (is it installed?)`,
    })
    expect(await load('vmm-plugin-future')).toMatchObject({
      code: 'API_VERSION',
      message: 'plugin "vmm-plugin-future": is written for plugin API 2; this vmm implements API 1',
    })
    expect(await load('vmm-plugin-crash')).toMatchObject({
      code: 'LOAD_FAILED',
      message: 'plugin "vmm-plugin-crash": failed to load: cannot initialise',
    })
    expect(await load('vmm-plugin-bad-register')).toMatchObject({
      code: 'REGISTER_FAILED',
      message: 'plugin "vmm-plugin-bad-register": register() threw: oops',
    })
    expect(await load('vmm-plugin-empty')).toMatchObject({
      code: 'NOT_A_PLUGIN',
      message: 'plugin "vmm-plugin-empty": is not a vmm plugin: it must export `vmmPluginApi` and `register`',
    })
  })

  it('rejects a plugin that registers an existing type, and registers none of its types', async () => {
    const { code, message, registry } = await load('vmm-plugin-clash')
    expect(code).toBe('DUPLICATE_TYPE')
    expect(message).toBe(
      'plugin "vmm-plugin-clash": registers component type "debugcon", which built-in already registers',
    )
    expect(registry.get('mine')).toBeUndefined()
  })

  it('reports a plugin type whose schema cannot be compiled, naming the plugin', async () => {
    const dir = fixture({
      ...plugins,
      'machine.yaml':
        'plugins: [vmm-plugin-bad-schema]\nmachine:\n  memory: 1MiB\ncomponents:\n  d:\n    type: odd-device\n',
    })
    const error = await resolveManifest(
      readManifest(join(dir, 'machine.yaml')),
      registerBuiltins(new ComponentRegistry()),
    ).catch((e: unknown) => e)
    expect((error as ManifestError).message.replaceAll(`${dir}/`, '')).toBe(
      'machine.yaml:6:11: component type "odd-device" (plugin "vmm-plugin-bad-schema") has a schema ajv cannot compile: type must be JSONType or JSONType[]: integr',
    )
  })

  it('reports every bad plugin of a manifest at its line, and still validates the rest', async () => {
    const dir = fixture({
      ...plugins,
      'machine.yaml': [
        'plugins:',
        '  - vmm-plugin-good',
        '  - vmm-plugin-missing',
        '  - vmm-plugin-future',
        'machine:',
        '  memory: 1MiB',
        'components:',
        '  d:',
        '    type: good-device',
        '    level: high',
        '',
      ].join('\n'),
    })
    const error = await resolveManifest(
      readManifest(join(dir, 'machine.yaml')),
      registerBuiltins(new ComponentRegistry()),
    ).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ManifestError)
    expect((error as ManifestError).message.replaceAll(`${dir}/`, '').split('\n')).toEqual([
      `machine.yaml:3:5: plugin "vmm-plugin-missing": cannot be found from machine.yaml, the working directory ${process.cwd()} or the installed framework (is it installed?)`,
      'machine.yaml:4:5: plugin "vmm-plugin-future": is written for plugin API 2; this vmm implements API 1',
      'machine.yaml:10:12: expected integer, got string "high"',
    ])
  })
})

// Run after `tsc -b` (the root `pnpm build` does): makes dist/ start fast. Everything works without
// this step, only slower; see src/third-party/README.md and src/manifest/precompiled.ts.
//  1. Each dist/third-party/<name>.js (tsc's re-export of a package) becomes a single-file bundle.
//  2. dist/manifest/precompiled.js gets ajv standalone validators for the manifest envelope and the
//     built-in component types, so a manifest that uses only built-ins never loads ajv.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Ajv } from 'ajv'
import standaloneCode from 'ajv/dist/standalone/index.js'
import { build } from 'esbuild'

const root = fileURLToPath(new URL('..', import.meta.url))
// ajv is CommonJS; a bundle needs a require() for what it asks of Node.
const banner = {
  js: "import { createRequire as __vmmRequire } from 'node:module'; const require = __vmmRequire(import.meta.url);",
}
const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  allowOverwrite: true,
  logLevel: 'warning',
  banner,
}

for (const file of readdirSync(join(root, 'src/third-party')).filter((f) => f.endsWith('.ts'))) {
  const out = join(root, 'dist/third-party', file.replace(/\.ts$/, '.js'))
  await build({ ...common, entryPoints: [join(root, 'src/third-party', file)], outfile: out })
  rmSync(`${out}.map`, { force: true }) // tsc's map describes the re-export, not the bundle
}

const { ajvOptions, envelopeSchema, nodeSchema, schemaKey } = await import('../dist/manifest/schema.js')
const { ComponentRegistry } = await import('../dist/component/registry.js')
const { registerBuiltins } = await import('../dist/components/builtins.js')
const schemas = [envelopeSchema, ...registerBuiltins(new ComponentRegistry()).all().map(nodeSchema)]
const ajv = new Ajv({ ...ajvOptions, code: { source: true, esm: true } })
const exportsByKey = {}
for (const schema of schemas) {
  const key = schemaKey(schema)
  ajv.addSchema(schema, key)
  exportsByKey[key] = key
}
const table = schemas
  .map(
    (s) => `  ${schemaKey(s)}: { source: ${JSON.stringify(JSON.stringify(s))}, validate: ${schemaKey(s)} },`,
  )
  .join('\n')
const generated = `${standaloneCode(ajv, exportsByKey)}\nexport const validators = {\n${table}\n}\n`
const tmp = mkdtempSync(join(tmpdir(), 'vmm-precompiled-'))
writeFileSync(join(tmp, 'precompiled.mjs'), generated)
const out = join(root, 'dist/manifest/precompiled.js')
await build({
  ...common,
  entryPoints: [join(tmp, 'precompiled.mjs')],
  outfile: out,
  nodePaths: [join(root, 'node_modules')],
})
rmSync(`${out}.map`, { force: true })

// 3. dist/index.js becomes one file: core's own ~40 modules plus yaml, inversify and
//    reflect-metadata, so `vmm run` and every plugin (which imports @vmm/core) share a single
//    module that Node reads, resolves and compiles once. The entry is src/index.ts read as text
//    with its imports resolved in dist/ (tsc's output, decorator metadata included), so the bundle
//    is never built from an earlier bundle. The precompiled validators (step 2) go in, since every
//    manifest needs the envelope's; ajv stays a separate file, loaded only for plugin schemas.
await build({
  ...common,
  stdin: {
    contents: readFileSync(join(root, 'src/index.ts'), 'utf8'),
    loader: 'ts',
    resolveDir: join(root, 'dist'),
    sourcefile: 'index.ts',
  },
  outfile: join(root, 'dist/index.js'),
  nodePaths: [join(root, 'node_modules')],
  // Not minified: measured no faster to load here (V8 pre-parses lazily either way).
  plugins: [
    {
      name: 'vmm-lazy',
      setup(b) {
        // Third-party packages from their sources (src/third-party/*.ts), not from the step-1 bundles,
        // so what they share (reflect-metadata) is in the bundle once and unused exports go.
        b.onResolve({ filter: /\/third-party\/(yaml|inversify|reflect-metadata)\.js$/ }, (args) => {
          const name = /([^/]+)\.js$/.exec(args.path)[1]
          return join(args.resolveDir, args.path) === join(root, 'dist/third-party', `${name}.js`)
            ? { path: join(root, 'src/third-party', `${name}.ts`) }
            : undefined
        })
        // yaml's ES module build (the one it gives bundlers) rather than its CommonJS one: the same
        // code, but hoisted into the bundle instead of ~70 module wrappers run at import. Its
        // log.js is the one difference (console.warn for process.emitWarning), so that file stays
        // Node's.
        b.onResolve({ filter: /^yaml$/ }, (args) => ({
          path: createRequire(join(args.resolveDir, 'x.js'))
            .resolve('yaml')
            .replace(/dist\/index\.js$/, 'browser/index.js'),
        }))
        b.onResolve({ filter: /\/log\.js$/ }, (args) => {
          const abs = join(args.resolveDir, args.path)
          return abs.endsWith('/yaml/browser/dist/log.js')
            ? { path: abs.replace(/browser\/dist\/log\.js$/, 'dist/log.js') }
            : undefined
        })
        // The validators from step 2's generated source, not from its bundle.
        b.onResolve({ filter: /\/precompiled\.js$/ }, (args) =>
          join(args.resolveDir, args.path) === join(root, 'dist/manifest/precompiled.js')
            ? { path: join(tmp, 'precompiled.mjs') }
            : undefined,
        )
        b.onResolve({ filter: /\/ajv\.js$/ }, (args) =>
          join(args.resolveDir, args.path) === join(root, 'dist/third-party/ajv.js')
            ? { path: './third-party/ajv.js', external: true }
            : undefined,
        )
      },
    },
  ],
})
rmSync(join(root, 'dist/index.js.map'), { force: true }) // tsc's map describes the re-exports
rmSync(tmp, { recursive: true })

// 4. dist/index.js becomes a facade over dist/index.body.cjs, compiled with a V8 code cache
//    (scripts/code-cache.mjs, src/code-cache.ts): Node 20 has no compile cache for ES modules.
const { codeCacheBundle } = await import('./code-cache.mjs')
await codeCacheBundle(join(root, 'dist/index.js'), { loader: './code-cache.js' })

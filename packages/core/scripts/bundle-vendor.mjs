// Replaces each dist/vendor/<name>.js (tsc's re-export of a package) with a single-file bundle of
// the same exports; see src/vendor/README.md for why. Run after `tsc -b` (root `pnpm build`).
import { readdirSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = fileURLToPath(new URL('..', import.meta.url))
const vendor = `${root}src/vendor/`
for (const file of readdirSync(vendor).filter((f) => f.endsWith('.ts'))) {
  const name = file.slice(0, -3)
  const out = `${root}dist/vendor/${name}.js`
  await build({
    entryPoints: [`${vendor}${file}`],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: out,
    allowOverwrite: true,
    logLevel: 'warning',
    // ajv is CommonJS; give the bundle a require() for the Node built-ins it asks for.
    banner: {
      js: "import { createRequire as __vmmRequire } from 'node:module'; const require = __vmmRequire(import.meta.url);",
    },
  })
  rmSync(`${out}.map`, { force: true }) // tsc's map describes the re-export, not the bundle
}

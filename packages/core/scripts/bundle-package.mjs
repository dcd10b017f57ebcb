// Build step for the packages `vmm run` loads besides core (root `pnpm build`, after tsc):
//   node packages/core/scripts/bundle-package.mjs <package dir> ...
// Their dist/index.js (tsc's ~20-40 modules each) becomes one file, built
// from src/index.ts read as text with its imports resolved in dist/ (so never from an earlier
// bundle), every package import left external. Resolving, reading and compiling the modules one by
// one was ~10 ms of `vmm run` here (bench:startup). With --code-cache the bundle is then compiled
// with a V8 code cache (scripts/code-cache.mjs), which needs the package to depend on @vmm/core.
// Their other entry points (@vmm/kvm/testing) stay tsc's modules. Only for packages whose other
// entry points do not share classes with the main one: @vmm/virtio/testing builds on its queues, so
// a bundled @vmm/virtio would give its users two copies of them; it stays tsc's modules.
import { readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { build } from 'esbuild'
import { codeCacheBundle } from './code-cache.mjs'

for (const dir of process.argv.slice(2)) {
  const root = resolve(dir)
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  const outfile = join(root, 'dist/index.js')
  await build({
    stdin: {
      contents: readFileSync(join(root, 'src/index.ts'), 'utf8'),
      loader: 'ts',
      resolveDir: join(root, 'dist'),
      sourcefile: 'index.ts',
    },
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    allowOverwrite: true,
    logLevel: 'warning',
  })
  rmSync(`${outfile}.map`, { force: true }) // tsc's map describes the re-exports
  if (pkg.dependencies?.['@vmm/core']) await codeCacheBundle(outfile, { loader: '@vmm/core/code-cache' })
}

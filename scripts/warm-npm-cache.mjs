// Setup step: put the public dependencies of our packages (and the TypeScript the plugin template
// compiles with) into npm's cache, so test/e2e/npm-packages.test.ts can install the packed
// tarballs with `npm install --offline`: tests send no traffic off the machine (network rule),
// setup is where the registry is used. Versions come from the package manifests, so the cache
// follows them; installing into a throw-away project fetches the transitive dependencies too.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const wanted = {}
const manifests = [
  ...readdirSync(join(root, 'packages')).map((p) => join(root, 'packages', p, 'package.json')),
  join(root, 'examples/plugin-template/package.json'),
]
for (const file of manifests) {
  const m = JSON.parse(readFileSync(file, 'utf8'))
  for (const [name, version] of Object.entries({ ...m.dependencies, ...m.devDependencies }))
    if (!name.startsWith('@vmm/') && !String(version).startsWith('workspace:')) wanted[name] = version
}
const project = mkdtempSync(join(tmpdir(), 'vmm-npm-cache-'))
try {
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'warm', private: true, dependencies: wanted }),
  )
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')),
  )
  execFileSync('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund'], {
    cwd: project,
    env,
    stdio: 'inherit',
  })
  console.log(`npm cache: ${Object.keys(wanted).sort().join(', ')}`)
} finally {
  rmSync(project, { recursive: true, force: true })
}

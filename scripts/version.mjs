// Sets one version on every published package: `node scripts/version.mjs 0.2.0` (or patch, minor,
// major). The packages move together, like a changesets "fixed" group: a plugin or an embedding
// program names one vmm version, and @vmm/core's plugin API (PLUGIN_API_VERSION) is checked at
// load time, not by semver ranges between our packages. Changesets would add per-package
// changelogs and a bot we do not use; this is the one thing we need from it. Workspace
// dependencies stay `workspace:*`; `pnpm pack` / `pnpm publish` rewrite them to this exact version
// (test/e2e/npm-packages.test.ts checks the packed package.json files).
// Release: node scripts/version.mjs <v> && pnpm install && pnpm build && git commit -am "release <v>"
//          && pnpm -r --filter './packages/*' publish
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const files = readdirSync(join(root, 'packages')).map((d) => join(root, 'packages', d, 'package.json'))
const current = JSON.parse(readFileSync(files[0], 'utf8')).version
const arg = process.argv[2]
if (arg === undefined) {
  process.stdout.write(`${current}\nusage: node scripts/version.mjs <x.y.z | patch | minor | major>\n`)
  process.exit(2)
}
const [major, minor, patch] = current.split('.').map(Number)
const next =
  arg === 'major'
    ? `${major + 1}.0.0`
    : arg === 'minor'
      ? `${major}.${minor + 1}.0`
      : arg === 'patch'
        ? `${major}.${minor}.${patch + 1}`
        : arg
if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(next)) {
  process.stderr.write(`version.mjs: "${arg}" is not a version (x.y.z) nor patch, minor or major\n`)
  process.exit(2)
}
for (const file of files) {
  const text = readFileSync(file, 'utf8')
  writeFileSync(file, text.replace(/^ {2}"version": "[^"]*"/m, `  "version": "${next}"`))
}
process.stdout.write(`${current} -> ${next} in ${files.length} packages\n`)

// The packages as a user outside this repository gets them (issue 19): every package packed with
// `pnpm pack`, the tarballs installed with npm into a fresh project (no workspace; the public dependencies
// ajv, inversify, yaml, reflect-metadata, node-addon-api, typescript come from npm's cache,
// which `npm run setup` fills: the install runs --offline), examples/plugin-template copied in and compiled with the project's TypeScript (the
// decorator plugin) beside its plain-JavaScript plugin, the machine booted with `npx vmm run`, and
// an embedding program that builds a machine with Machine.fromObject. Twice: with the prebuilt
// addons and install scripts not run at all (--ignore-scripts, as under script approval), and
// with the node-gyp fallback (VMM_BUILD_FROM_SOURCE=1). On a host without usable /dev/kvm the
// machines run on the test hypervisor and the test still checks that the addons load.
import { execFileSync, spawnSync } from 'node:child_process'
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'

const root = fileURLToPath(new URL('../..', import.meta.url))
const packages = readdirSync(join(root, 'packages'))
const work = mkdtempSync(join(tmpdir(), 'vmm-npm-'))
const packs = join(work, 'packs')
const kvm =
  spawnSync('node', ['-e', "require('fs').accessSync('/dev/kvm', require('fs').constants.W_OK)"]).status === 0
const hypervisorArgs = kvm ? [] : ['--hypervisor', 'test']
if (!kvm) console.log('[npm-packages] /dev/kvm not usable: machines run on the test hypervisor')

// A user's environment: none of the npm_* variables `pnpm test` sets for its own scripts, which
// would change what npm does (its config, its script approval).
const userEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')),
)

function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...userEnv, ...env }, timeout: 300_000 })
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: ${r.status}\n${r.stdout}\n${r.stderr}`)
  return r
}

beforeAll(() => {
  mkdirSync(packs)
  for (const p of packages) sh('pnpm', ['pack', '--pack-destination', packs], join(root, 'packages', p))
}, 300_000)
afterAll(() => rmSync(work, { recursive: true, force: true }))

test('every package packs with its workspace dependencies rewritten to the one version', () => {
  const version = JSON.parse(readFileSync(join(root, 'packages/core/package.json'), 'utf8')).version
  const tarballs = readdirSync(packs)
  expect(tarballs).toHaveLength(packages.length)
  for (const t of tarballs) {
    const pkg = JSON.parse(
      execFileSync('tar', ['-xzOf', join(packs, t), 'package/package.json'], { encoding: 'utf8' }),
    )
    expect(pkg.version).toBe(version)
    for (const [dep, range] of Object.entries({ ...pkg.dependencies, ...pkg.devDependencies }))
      if (dep.startsWith('@vmm/'))
        expect(`${pkg.name} -> ${dep}@${range}`).toBe(`${pkg.name} -> ${dep}@${version}`)
    // No `repository` yet: the project has no public repository to name (an invented URL would
    // send users nowhere); add it with the first publication.
    for (const field of ['license', 'engines', 'files'])
      expect(pkg[field], `${pkg.name}.${field}`).toBeDefined()
    const files = execFileSync('tar', ['-tzf', join(packs, t)], { encoding: 'utf8' }).split('\n')
    expect(files, pkg.name).toContain('package/README.md')
    expect(files, pkg.name).toContain('package/LICENSE')
    if (pkg.scripts?.install) {
      expect(files).toContain('package/scripts/install.mjs')
      expect(
        files.some((f) => /^package\/prebuilds\/linux-x64\/.*\.node$/.test(f)),
        pkg.name,
      ).toBe(true)
      // The glibc floor the README promises for the prebuilt module (objdump: binutils, in setup.sh's list).
      const dir = mkdtempSync(join(work, 'unpack-'))
      execFileSync('tar', ['-xzf', join(packs, t), '-C', dir])
      const node = files.find((f) => f.endsWith('.node'))!
      const symbols = execFileSync('objdump', ['-T', join(dir, node)], { encoding: 'utf8' })
      const glibc = [...symbols.matchAll(/GLIBC_2\.(\d+)/g)].map((m) => Number(m[1]))
      expect(Math.max(...glibc), `${pkg.name}: newest glibc symbol 2.x`).toBeLessThanOrEqual(34)
    }
    // `vmm jail`'s native helper ships beside @vmm/host's addon (issue 17).
    if (pkg.name === '@vmm/host') expect(files).toContain('package/prebuilds/linux-x64/vmm-jail')
  }
})

const embed = `// Builds a machine from data, runs it and reads its result, as a tool embedding vmm would.
import { Machine } from '@vmm/core'
const useKvm = process.argv[2] === 'kvm'
const { hypervisorProvider } = await import(useKvm ? '@vmm/kvm' : '@vmm/core/testing')
const hypervisor = await hypervisorProvider.open()
const machine = await Machine.fromObject(
  {
    plugins: ['vmm-plugin-answer', './plugin/machine/debug-exit.js'],
    machine: { memory: '1MiB' },
    components: {
      guest: { type: 'raw-image', file: 'plugin/machine/guest.bin', address: 0x7c00 },
      console: { type: 'debugcon', resources: { port: 0xe9 } },
      answer: { type: 'answer', value: 65, resources: { port: 0xf0 } },
      exit: { type: 'debug-exit', resources: { port: 0xf4 } },
    },
  },
  { hypervisor },
)
const events = []
machine.on((e) => e.type === 'device' && events.push(e.source + ':' + e.name))
const result = await machine.run()
await machine.dispose()
hypervisor.dispose()
console.log(JSON.stringify({ status: result.status, code: result.code, events }))
`

describe.each([
  { name: 'prebuilt addons, no install scripts', installArgs: ['--ignore-scripts'], env: {} },
  // npm 11 blocks install scripts until the project allows them (package.json allowScripts, what
  // `npm install-scripts approve` writes); this is the user who did.
  { name: 'node-gyp fallback', installArgs: ['--foreground-scripts'], env: { VMM_BUILD_FROM_SOURCE: '1' } },
])('installed with npm: $name', ({ installArgs, env }) => {
  const prebuilt = installArgs.includes('--ignore-scripts')
  const project = join(work, prebuilt ? 'prebuilt' : 'fallback')

  test('npm install of the tarballs prints no error; the addons load from where they should', () => {
    mkdirSync(project)
    const deps = Object.fromEntries(
      readdirSync(packs).map((t) => [
        `@vmm/${t.replace(/^vmm-(.*)-\d+\.\d+\.\d+\.tgz$/, '$1')}`,
        `file:${join(packs, t)}`,
      ]),
    )
    // The plugin template is a package of the project (file: dependency), as a plugin in development is.
    cpSync(join(root, 'examples/plugin-template'), join(project, 'plugin'), {
      recursive: true,
      filter: (f) => !f.includes('node_modules') && !f.endsWith('/dist'),
    })
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify(
        {
          name: 'user-project',
          private: true,
          type: 'module',
          dependencies: { ...deps, 'vmm-plugin-answer': 'file:./plugin', typescript: '7.0.2' },
          ...(prebuilt ? {} : { allowScripts: { [deps['@vmm/kvm']!]: true, [deps['@vmm/host']!]: true } }),
        },
        null,
        2,
      ),
    )
    const r = sh(
      'npm',
      // --offline: setup put the public dependencies in npm's cache (scripts/warm-npm-cache.mjs);
      // a test sends nothing off the machine.
      ['install', '--offline', '--no-audit', '--no-fund', '--install-links=false', ...installArgs],
      project,
      env,
    )
    expect(r.stderr).not.toMatch(/\bERR!|error/i)
    const kvmDir = join(project, 'node_modules/@vmm/kvm')
    const hostDir = join(project, 'node_modules/@vmm/host')
    if (prebuilt) {
      expect(existsSync(join(kvmDir, 'build'))).toBe(false)
      // The install script, run by hand, finds the prebuilt binary and builds nothing.
      sh('node', ['scripts/install.mjs'], kvmDir)
      expect(existsSync(join(kvmDir, 'build'))).toBe(false)
    } else {
      expect(existsSync(join(kvmDir, 'build/Release/vmm_kvm.node'))).toBe(true)
      expect(existsSync(join(hostDir, 'build/Release/vmm_host.node'))).toBe(true)
    }
    // Kvm.open fails for any reason but the native module when there is no usable /dev/kvm.
    const probe = sh(
      'node',
      [
        '--input-type=module',
        '-e',
        "import { Kvm } from '@vmm/kvm'; try { Kvm.open().dispose(); console.log('open') } catch (e) { console.log(e.reason) }",
      ],
      project,
    )
    expect(probe.stdout.trim()).not.toBe('native-module')
  }, 600_000)

  test('the TypeScript plugin compiles with the project TypeScript and both plugins run with npx vmm run', () => {
    sh('npx', ['tsc', '-p', 'plugin'], project)
    const r = spawnSync('npx', ['vmm', 'run', 'plugin/machine/machine.yaml', ...hypervisorArgs], {
      cwd: project,
      encoding: 'utf8',
      env: userEnv,
    })
    expect(r.stdout).toBe('hi\n*')
    expect(r.status, r.stderr).toBe(42)
  }, 120_000)

  test("the template's own test (node:test, the test hypervisor) passes, as docs/plugins.md runs it", () => {
    const r = sh('node', ['--test', 'test/'], join(project, 'plugin'))
    expect(r.stdout).toMatch(/^# pass 1$/m)
  }, 120_000)

  test('an embedding program builds a machine with Machine.fromObject and reads its result', () => {
    writeFileSync(join(project, 'embed.mjs'), embed)
    const r = sh('node', ['embed.mjs', kvm ? 'kvm' : 'test'], project)
    const lines = r.stdout.trim().split('\n')
    expect(lines[0]).toBe('hi')
    // The guest echoes the byte it read ('A', 65) before it exits with it.
    expect(lines.at(-1)![0]).toBe('A')
    expect(JSON.parse(lines.at(-1)!.slice(1))).toEqual({
      status: 'guest-exit',
      code: 65,
      events: ['answer:read'],
    })
  }, 120_000)
})

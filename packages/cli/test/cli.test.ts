import { spawn, spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { GUEST_PANIC_EXIT_CODE } from '@vmm/core'
import { describe, expect, it } from 'vitest'
import { EXIT_GUEST_FAILURE, EXIT_HOST_FAILURE, EXIT_OK, EXIT_USAGE } from '../src/exit-codes.js'
import { fixture, helloGuest } from './fixtures.js'

// The CLI is tested as users run it: the built dist/main.js in a child process (`pnpm test`
// builds first).
const main = fileURLToPath(new URL('../dist/main.js', import.meta.url))
const example = fileURLToPath(new URL('../../../examples/debug-exit-machine/machine.yaml', import.meta.url))

function vmm(...args: string[]) {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8' })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

const hello =
  'machine:\n  memory: 64KiB\ncomponents:\n  g:\n    type: raw-image\n    file: g.bin\n    address: 0x1000\n  con:\n    type: debugcon\n    resources: { port: 0xe9 }\n'

describe('vmm', () => {
  it('validate: ok, --print, and every error with its position', () => {
    const dir = fixture({
      'g.bin': helloGuest,
      'ok.yaml': hello,
      'bad.yaml': 'machine:\n  memory: 1MiB\n  cpus: 2\ncomponents:\n  x:\n    type: nic\n',
    })
    expect(vmm('validate', join(dir, 'ok.yaml'))).toEqual({
      code: 0,
      stdout: `${join(dir, 'ok.yaml')}: ok (2 components)\n`,
      stderr: '',
    })
    const printed = vmm('validate', join(dir, 'ok.yaml'), '--print')
    expect(printed.code).toBe(0)
    expect(printed.stdout).toContain(
      `  g:\n    type: raw-image\n    file: ${join(dir, 'g.bin')}\n    address: 4096\n    vcpu: 0\n`,
    )
    expect(printed.stdout).toContain(
      '  con:\n    type: debugcon\n    output: stdout\n    resources:\n      port: 0xe9\n',
    )
    const bad = vmm('validate', join(dir, 'bad.yaml'))
    expect(bad.code).toBe(EXIT_USAGE) // a manifest error, not a host failure
    expect(bad.stderr).toBe(
      `${dir}/bad.yaml:3:3: unknown field "cpus" (did you mean "vcpus"?); expected one of: memory, vcpus, irqchip, memoryModel, layout\n` +
        `${dir}/bad.yaml:6:11: unknown component type "nic"; expected one of: debugcon, raw-image\n`,
    )
  })

  it('validate: an empty or directory path is refused with its position, not EISDIR', () => {
    const dir = fixture({
      'e.yaml': hello.replace('file: g.bin', 'file: ""'),
      'd.yaml': hello.replace('file: g.bin', 'file: .'),
    })
    for (const m of ['e.yaml', 'd.yaml']) {
      const r = vmm('validate', join(dir, m))
      expect(r.code).toBe(EXIT_USAGE)
      expect(r.stderr).toBe(
        `${join(dir, m)}:6:11: raw image ${dir} is a directory, not a file (is the path empty or a typo?)\n`,
      )
    }
  })

  it("schema: with a manifest, its plugins' component types too", () => {
    const builtIn = JSON.stringify(JSON.parse(vmm('schema').stdout))
    expect(builtIn).not.toContain('"debug-exit"')
    const withPlugins = vmm('schema', example)
    expect(withPlugins.code).toBe(EXIT_OK)
    expect(JSON.stringify(JSON.parse(withPlugins.stdout))).toContain('"debug-exit"')
    const dir = fixture({ 'm.yaml': `plugins: [vmm-plugin-nowhere]\n${hello}` })
    const missing = vmm('schema', join(dir, 'm.yaml'))
    expect(missing.code).toBe(EXIT_USAGE)
    expect(missing.stderr).toContain('plugin "vmm-plugin-nowhere": cannot be found from')
  })

  it('graph: text and dot; svg through Graphviz or a clear error', () => {
    expect(vmm('graph', example).stdout).toBe(
      'guest (raw-image)\nconsole (debugcon)  port: pio [0xe9, 0xea)\nexit (debug-exit)  port: pio [0xf4, 0xf8)\n',
    )
    expect(vmm('graph', example, '--format', 'dot').stdout).toContain(
      '"exit" [label="exit\\ndebug-exit\\npio 0xf4"];',
    )
    const svg = vmm('graph', example, '--format', 'svg')
    const hasDot = spawnSync('dot', ['-V']).error === undefined
    if (hasDot) expect(svg.stdout).toContain('<svg')
    else {
      expect(svg.code).toBe(1)
      expect(svg.stderr).toContain('sudo apt-get install graphviz')
    }
    expect(vmm('graph', example, '--format', 'png')).toMatchObject({ code: 2 })
  })

  it('schema: the merged JSON Schema with every built-in type', () => {
    const r = vmm('schema')
    expect(r.code).toBe(0)
    const schema = JSON.parse(r.stdout)
    expect(schema.properties.components.additionalProperties.properties.type.enum).toEqual([
      'debugcon',
      'raw-image',
    ])
    expect(schema.properties.machine.properties.memory.anyOf[0]).toEqual({ type: 'integer', minimum: 0 })
  })

  it('run: the guest output, and the exit code the guest asked for', () => {
    expect(vmm('run', example, '--hypervisor', 'test')).toEqual({
      code: 0,
      stdout: 'hello from the guest\n',
      stderr: '',
    })
    const timed = vmm('run', example, '--hypervisor', 'test', '--timings')
    expect(timed.stderr).toMatch(/^vmm: timings \(ms since process start\)\n +[\d.]+ +manifest read/)
    expect(timed.stderr).toMatch(/\n +[\d.]+ +loaded and started: first guest instruction\n/)
    expect(timed.stderr).toMatch(/\n +[\d.]+ +guest: load\n/)
  })

  it('run: a failing guest exits non-zero with the reason', () => {
    const dir = fixture({ 'g.bin': Uint8Array.of(0x0f, 0x0b), 'm.yaml': hello })
    expect(vmm('run', join(dir, 'm.yaml'), '--hypervisor', 'test')).toEqual({
      code: 1,
      stdout: '',
      stderr:
        'vmm: vCPU 0: internal error 1 at instruction bytes 0f 0b 00 00 00 00 00 00 00 00 00 00 00 00 00\n',
    })
  })

  it('run: a component failing to dispose keeps the exit code and shows the cause', () => {
    const plugin = fileURLToPath(new URL('./fixtures/bad-dispose-plugin.mjs', import.meta.url))
    const dir = fixture({
      'g.bin': helloGuest,
      'm.yaml': `plugins: [${JSON.stringify(plugin)}]\n${hello}  stuck:\n    type: bad-dispose\n`,
    })
    expect(vmm('run', join(dir, 'm.yaml'), '--hypervisor', 'test')).toEqual({
      code: 0,
      stdout: 'ok',
      stderr: 'vmm: while cleaning up: stuck: dispose failed: cannot let go of its file\n',
    })
    // A build that fails: its own error is what the user reads; the cleanup's comes as well.
    const broken = fixture({
      'g.bin': helloGuest,
      'm.yaml': `plugins: [${JSON.stringify(plugin)}]\n${hello}  stuck:\n    type: bad-dispose\n  broken:\n    type: bad-build\n`,
    })
    const r = vmm('run', join(broken, 'm.yaml'), '--hypervisor', 'test')
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(
      'vmm: while cleaning up: stuck: dispose failed: cannot let go of its file\n' +
        'vmm: broken: build failed: no such device\n',
    )
  })

  it('run: a hypervisor that cannot be loaded is a clear error', () => {
    const r = vmm('run', example, '--hypervisor', 'vmm-no-such-hypervisor')
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(
      /^vmm: cannot load the hypervisor module "vmm-no-such-hypervisor": not found from .*machine\.yaml/,
    )
    expect(r.stderr).toContain('--hypervisor test')
  })

  it('run: SIGTERM stops a machine that has no way to ask its guest to shut down', async () => {
    const dir = fixture({ 'g.bin': Uint8Array.of(0xeb, 0xfe), 'm.yaml': hello }) // jmp $
    const child = spawn(process.execPath, [main, 'run', join(dir, 'm.yaml'), '--hypervisor', 'test'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (d) => (stderr += d))
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    await new Promise((r) => setTimeout(r, 1500))
    child.kill('SIGTERM')
    expect(await exited).toBe(0)
    expect(stderr).not.toContain('asked the guest to shut down')
  })

  it("exit codes: four distinct meanings, the guest-failure one the same as core's", () => {
    expect(new Set([EXIT_OK, EXIT_HOST_FAILURE, EXIT_USAGE, EXIT_GUEST_FAILURE]).size).toBe(4)
    expect(EXIT_GUEST_FAILURE).toBe(GUEST_PANIC_EXIT_CODE)
    // A manifest that parses but names a file that is not there fails before anything starts.
    const dir = fixture({ 'm.yaml': hello })
    const r = vmm('run', join(dir, 'm.yaml'), '--hypervisor', 'test')
    expect(r.code).not.toBe(EXIT_OK)
    expect(r.code).not.toBe(EXIT_GUEST_FAILURE)
  })

  it('usage errors exit 2', () => {
    expect(vmm('run', example, '--shutdown-timeout', 'soon')).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--shutdown-timeout must be a number of seconds, not "soon"'),
    })
    expect(vmm()).toMatchObject({ code: 2 })
    expect(vmm('frobnicate', 'x')).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('unknown command "frobnicate"'),
    })
    expect(vmm('validate')).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('validate needs a manifest file'),
    })
    expect(vmm('validate', 'x', '--bogus')).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("Unknown option '--bogus'"),
    })
  })
})

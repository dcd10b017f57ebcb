import { join } from 'node:path'
import { Ajv } from 'ajv'
import { describe, expect, it } from 'vitest'
import { ComponentRegistry } from '../src/component/registry.js'
import { registerBuiltins } from '../src/components/builtins.js'
import { ManifestError } from '../src/manifest/diagnostics.js'
import { graphDot, graphText, printEffective } from '../src/manifest/print.js'
import { resolveManifest } from '../src/manifest/resolve.js'
import { envelopeSchema, manifestSchema, nodeSchema } from '../src/manifest/schema.js'
import { manifestFromObject, readManifest } from '../src/manifest/source.js'
import { fixture, helloGuest } from './fixtures.js'
import { testRegistry } from './test-types.js'

/** Resolves `main.yaml` among `files` and returns its diagnostics as "file:line:col: message", paths relative. */
async function errors(files: Record<string, string>, main = 'main.yaml'): Promise<string[]> {
  const dir = fixture({ 'g.bin': helloGuest, ...files })
  try {
    await resolveManifest(readManifest(join(dir, main)), testRegistry())
  } catch (e) {
    if (!(e instanceof ManifestError)) throw e
    return e.message.replaceAll(`${dir}/`, '').split('\n')
  }
  throw new Error('expected the manifest to be rejected')
}

const head = 'machine:\n  memory: 1MiB\n  irqchip: true\ncomponents:\n'

describe('manifest errors name file, line, column and what was expected', () => {
  it('unknown component type', async () => {
    expect(await errors({ 'main.yaml': `${head}  a:\n    type: test-prot\n` })).toEqual([
      'main.yaml:6:11: unknown component type "test-prot" (did you mean "test-port"?); expected one of: debugcon, raw-image, test-bar, test-broken, test-link, test-mmio, test-port',
    ])
  })

  it('missing, mistyped and unknown fields, all in one pass', async () => {
    const yaml = [
      'machine:',
      '  memory: lots',
      '  vcpu: 2',
      'components:',
      '  a:',
      '    type: test-port',
      '    registers: "8"',
      '    colour: red',
      '  g:',
      '    type: raw-image',
      '    file: g.bin',
      '  9bad:',
      '    type: debugcon',
      '',
    ].join('\n')
    expect(await errors({ 'main.yaml': yaml })).toEqual([
      'main.yaml:3:3: unknown field "vcpu" (did you mean "vcpus"?); expected one of: memory, vcpus, irqchip, memoryModel, layout',
      'main.yaml:2:11: expected a size such as 4096, 0x1000 or "64MiB", got "lots"',
      'main.yaml:12:3: invalid id "9bad"; expected letters, digits, "_", "." or "-", starting with a letter or "_"',
      'main.yaml:8:5: unknown field "colour"; expected one of: type, resources, registers, label',
      'main.yaml:7:16: expected integer, got string "8"',
      'main.yaml:10:5: missing required field "address"',
    ])
  })

  it('sizes: units are binary, fractions must come to whole bytes', async () => {
    const yaml = `machine:\n  memory: "1.5"\ncomponents:\n  r:\n    type: test-mmio\n    window: 1.5KiB\n`
    expect(await errors({ 'main.yaml': yaml })).toEqual(['main.yaml:2:11: expected a whole number of bytes'])
    const ok = await resolveManifest(
      manifestFromObject({
        machine: { memory: '1.5 MiB' },
        components: { r: { type: 'test-mmio', window: '6k' } },
      }),
      testRegistry(),
    )
    expect(ok.machine.memory).toBe(1536 * 1024)
    expect(ok.components[0]!.config.window).toBe(6144)
  })

  it('a manifest without machine or components', async () => {
    expect(await errors({ 'main.yaml': 'plugins: []\n' })).toEqual([
      'main.yaml:1:1: missing required field "machine"',
      'main.yaml:1:1: missing required field "components"',
    ])
  })

  it('dangling reference and reference to the wrong type', async () => {
    const yaml = `${head}  p:\n    type: test-port\n  l:\n    type: test-link\n    parent: nope\n    peers: [p, l]\n`
    expect(await errors({ 'main.yaml': yaml })).toEqual([
      'main.yaml:9:13: "nope" is not a component; expected one of: p, l',
      'main.yaml:10:16: "l" is a test-link; expected a component of type test-port',
    ])
  })

  it('a self-reference reached through another node names the node itself', async () => {
    const yaml = `${head}  x:\n    type: test-link\n    parent: a\n  a:\n    type: test-link\n    parent: a\n`
    expect(await errors({ 'main.yaml': yaml })).toEqual(['main.yaml:10:13: reference cycle: a -> a'])
  })

  it('cyclic reference', async () => {
    const yaml = `${head}  a:\n    type: test-link\n    parent: b\n  b:\n    type: test-link\n    parent: c\n  c:\n    type: test-link\n    parent: a\n`
    expect(await errors({ 'main.yaml': yaml })).toEqual([
      'main.yaml:13:13: reference cycle: a -> b -> c -> a',
    ])
  })

  it('overlapping and misaligned ranges, unknown resource names, IRQ conflict', async () => {
    const yaml = [
      head.trimEnd(),
      '  a:',
      '    type: test-port',
      '    resources: { ports: 0x3f8, irq: 4 }',
      '  b:',
      '    type: test-port',
      '    resources: { ports: 0x3f8, irq: 4 }',
      '  c:',
      '    type: test-port',
      '    resources: { ports: 0x2fc }',
      '  m:',
      '    type: test-mmio',
      '    window: 0x2000',
      '    resources: { regs: 0xd0000000 }',
      '  n:',
      '    type: test-mmio',
      '    resources: { regs: 0xd0001000, bogus: 1 }',
      '  r:',
      '    type: test-mmio',
      '    resources: { regs: 0x1000 }',
      '',
    ].join('\n')
    expect(await errors({ 'main.yaml': yaml })).toEqual([
      'main.yaml:10:25: pio window [0x3f8, 0x400) of b overlaps pio window [0x3f8, 0x400) of a',
      'main.yaml:10:37: irq 4 is already used by a (irq); expected a free interrupt line',
      'main.yaml:13:25: pio window [0x2fc, 0x304) is not aligned; expected a multiple of 0x8',
      'main.yaml:20:36: test-mmio has no resource "bogus"; expected one of: regs',
      'main.yaml:20:24: mmio window [0xd0001000, 0xd0002000) of n overlaps mmio window [0xd0000000, 0xd0002000) of m',
      'main.yaml:23:24: mmio window [0x1000, 0x2000) of r overlaps guest RAM; expected an address in a hole or above RAM',
    ])
  })

  it('the in-kernel irqchip and PIT keep their ports, pages and lines (IRQ 0, 2)', async () => {
    const yaml = [
      head.trimEnd(),
      '  pit:',
      '    type: test-port',
      '    resources: { ports: 0x40, irq: 0 }',
      '  pic:',
      '    type: test-port',
      '    resources: { ports: 0xa0, irq: 2 }',
      '  ioapic:',
      '    type: test-mmio',
      '    resources: { regs: 0xfec00000 }',
      '  lapic:',
      '    type: test-mmio',
      '    resources: { regs: 0xfee00000 }',
      '  fine:',
      '    type: test-port',
      '    resources: { ports: 0x3f8, irq: 4 }',
      '',
    ].join('\n')
    expect(await errors({ 'main.yaml': yaml })).toEqual([
      'main.yaml:7:25: pio window [0x40, 0x48) of pit overlaps pio window [0x40, 0x44) of the in-kernel PIT (i8254)',
      'main.yaml:7:36: irq 0 is already used by the in-kernel PIT (timer); expected a free interrupt line',
      'main.yaml:10:25: pio window [0xa0, 0xa8) of pic overlaps pio window [0xa0, 0xa2) of the in-kernel slave PIC (i8259)',
      'main.yaml:10:36: irq 2 is already used by the PIC cascade; expected a free interrupt line',
      'main.yaml:13:24: mmio window [0xfec00000, 0xfec01000) of ioapic overlaps mmio window [0xfec00000, 0xfec01000) of the in-kernel IOAPIC',
      'main.yaml:16:24: mmio window [0xfee00000, 0xfee01000) of lapic overlaps mmio window [0xfee00000, 0xfee01000) of the local APICs',
    ])
  })

  it('several vCPUs without an irqchip', async () => {
    const yaml = 'machine:\n  memory: 1MiB\n  vcpus: 4\ncomponents: {}\n'
    expect(await errors({ 'main.yaml': yaml })).toEqual([
      'main.yaml:3:10: 4 vCPUs need machine.irqchip: true',
    ])
  })

  it('memory that is not a multiple of the page size', async () => {
    expect(await errors({ 'main.yaml': 'machine:\n  memory: 1000001\ncomponents: {}\n' })).toEqual([
      'main.yaml:2:11: machine.memory must be a non-zero multiple of the 4 KiB page size; 1000001 bytes is not (999424 would be)',
    ])
  })

  it('an interrupt line without an irqchip', async () => {
    const yaml = 'machine:\n  memory: 1MiB\ncomponents:\n  uart:\n    type: test-port\n'
    expect(await errors({ 'main.yaml': yaml })).toEqual([
      'main.yaml:5:5: uart (test-port) needs an interrupt line (irq); expected machine.irqchip: true',
    ])
  })

  it('memory smaller than the guest needs', async () => {
    const yaml =
      'machine:\n  memory: 4KiB\ncomponents:\n  g:\n    type: raw-image\n    file: g.bin\n    address: 0x7c00\n'
    expect(await errors({ 'main.yaml': yaml })).toEqual([
      'main.yaml:2:11: memory is 4 KiB, too small for g (raw-image), which needs RAM at [0x7c00, 0x7c09); expected at least 31753 bytes',
    ])
  })

  it('a file the component needs is missing', async () => {
    const yaml = `${head}  g:\n    type: raw-image\n    file: missing.bin\n    address: 0x7c00\n`
    const msg = await errors({ 'main.yaml': yaml })
    expect(msg).toEqual(['main.yaml:7:11: raw image missing.bin: does not exist (ENOENT)'])
  })

  it('include cycle', async () => {
    const files = {
      'main.yaml': `include: a.yaml\n${head}`,
      'a.yaml': 'include: [b.yaml]\n',
      'b.yaml': '# preset\ninclude:\n  - a.yaml\n',
    }
    const msg = await errors(files)
    expect(msg).toEqual(['b.yaml:3:5: include cycle: a.yaml -> b.yaml -> a.yaml'])
  })

  it('missing include', async () => {
    const msg = await errors({ 'main.yaml': `include: nope.yaml\n${head}` })
    expect(msg).toEqual(['main.yaml:1:10: cannot read manifest nope.yaml (ENOENT)'])
  })

  it('YAML syntax error', async () => {
    expect(await errors({ 'main.yaml': `${head}  a: [unclosed\n` })).toEqual([
      'main.yaml:6:1: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ])
  })

  it('an error in an included file points into that file', async () => {
    const files = {
      'board.yaml': `${head}  a:\n    type: test-port\n    registers: 4\n`,
      'main.yaml': 'include: board.yaml\ncomponents:\n  b:\n    type: test-port\n    registers: 2\n',
    }
    expect(await errors(files)).toEqual(['board.yaml:7:16: must be >= 8', 'main.yaml:5:16: must be >= 8'])
  })
})

describe('manifest resolution', () => {
  it('merges includes, fills defaults, allocates resources and orders dependencies first', async () => {
    const dir = fixture({
      'g.bin': helloGuest,
      'board.yaml': `${head}  uart:\n    type: test-port\n    resources: { ports: 0x3f8 }\n  link:\n    type: test-link\n    parent: uart\n`,
      'main.yaml': [
        'include: board.yaml',
        'machine:',
        '  memory: 2MiB',
        'components:',
        '  link:',
        '    peers: [uart, uart2]',
        '  uart2:',
        '    type: test-port',
        '  regs:',
        '    type: test-mmio',
        '',
      ].join('\n'),
    })
    const m = await resolveManifest(readManifest(join(dir, 'main.yaml')), testRegistry())
    expect(m.machine.memory).toBe(2 * 2 ** 20)
    expect(m.machine.irqchip).toBe(true)
    expect(m.components.map((c) => c.id)).toEqual(['uart', 'uart2', 'link', 'regs'])
    const byId = Object.fromEntries(m.components.map((c) => [c.id, c]))
    expect(byId.uart!.windows.get('ports')).toEqual({ kind: 'pio', base: 0x3f8, size: 8 })
    expect(byId.uart!.irqs.get('irq')).toBe(5)
    expect(byId.uart2!.windows.get('ports')).toEqual({ kind: 'pio', base: 0x1000, size: 8 })
    expect(byId.uart2!.irqs.get('irq')).toBe(6)
    expect(byId.regs!.windows.get('regs')).toEqual({ kind: 'mmio', base: 0xd000_0000, size: 0x1000 })
    expect(byId.regs!.config).toEqual({ registers: 16, window: 0x1000 })
    expect(byId.link!.references.get('peers')).toEqual(['uart', 'uart2'])
    const printed = printEffective(m)
    expect(printed).toContain(
      '  uart2:\n    type: test-port\n    registers: 8\n    resources:\n      ports: 0x1000\n      irq: 6\n',
    )
    // The effective machine is itself a manifest that resolves to the same machine.
    const again = await resolveManifest(
      readManifest(join(fixture({ 'm.yaml': printed }), 'm.yaml')),
      testRegistry(),
    )
    expect(printEffective(again)).toBe(printed)
  })

  it('accepts a manifest object; its messages name the JSON path', async () => {
    const source = manifestFromObject({
      machine: { memory: '1MiB' },
      components: { a: { type: 'test-port', registers: 1 } },
    })
    await expect(resolveManifest(source, testRegistry())).rejects.toThrow(
      '<manifest> at /components/a/registers: must be >= 8',
    )
  })
})

describe('schemas', () => {
  // Runtime compilation skips the meta-schema check (it costs ~70 ms of startup), so check here.
  it('the envelope and every built-in type are valid JSON Schema', () => {
    const ajv = new Ajv({ strict: false })
    const registry = registerBuiltins(new ComponentRegistry())
    for (const schema of [envelopeSchema, ...registry.all().map(nodeSchema), manifestSchema(registry)]) {
      expect(ajv.validateSchema(schema), JSON.stringify(ajv.errors)).toBe(true)
    }
  })
})

describe('graph and layout', () => {
  it('draws references as edges, in text and dot', async () => {
    const source = manifestFromObject({
      machine: { memory: '1MiB', irqchip: true },
      components: {
        uart: { type: 'test-port', resources: { ports: 0x3f8, irq: 4 } },
        link: { type: 'test-link', parent: 'uart', peers: ['uart'] },
      },
    })
    const m = await resolveManifest(source, testRegistry())
    expect(graphText(m)).toBe(
      'uart (test-port)  ports: pio [0x3f8, 0x400), irq: irq 4\nlink (test-link)\n  parent -> uart\n  peers -> uart\n',
    )
    const dot = graphDot(m)
    expect(dot).toContain('"uart" [label="uart\\ntest-port\\npio 0x3f8\\nirq 4"];')
    expect(dot).toContain('"link" -> "uart" [label="parent"];')
  })

  it('moves RAM that would cover the MMIO window above 4 GiB, leaving the window for devices', async () => {
    const source = manifestFromObject({
      machine: { memory: '4GiB' },
      components: {
        pinned: { type: 'test-mmio', resources: { regs: 0xfe00_0000 } },
        above: { type: 'test-mmio', resources: { regs: 0x1_0000_0000 } },
        free: { type: 'test-mmio' },
      },
    })
    const error = await resolveManifest(source, testRegistry()).catch((e: unknown) => e)
    expect((error as ManifestError).diagnostics.map((d) => d.message)).toEqual([
      'mmio window [0x100000000, 0x100001000) of above overlaps guest RAM; expected an address in a hole or above RAM',
    ])
    const ok = await resolveManifest(
      manifestFromObject({
        machine: { memory: '4GiB' },
        components: {
          pinned: { type: 'test-mmio', resources: { regs: 0xfe00_0000 } },
          free: { type: 'test-mmio' },
        },
      }),
      testRegistry(),
    )
    expect(ok.holes).toEqual([{ base: 0xd000_0000, size: 0x3000_0000 }])
    expect(ok.components.find((c) => c.id === 'free')!.windows.get('regs')!.base).toBe(0xd000_0000)
  })
})

// Hostile manifests (issue 13, fuzz figures): valid manifests with random edits (characters from
// YAML's syntax, deleted and duplicated ranges, random values), spread over three files that
// include one another (cycles, missing files and non-string includes among them). The property:
// reading and resolving either succeeds or throws a ManifestError whose every diagnostic names a
// file that was given, a line and column, and says something; no other exception escapes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { ManifestError } from '../src/manifest/diagnostics.js'
import { resolveManifest } from '../src/manifest/resolve.js'
import { SchemaCache } from '../src/manifest/schema.js'
import { readManifest } from '../src/manifest/source.js'
import { fuzz } from '../src/testing/fuzz.js'
import { helloGuest } from './fixtures.js'
import { testRegistry } from './test-types.js'

const dir = mkdtempSync(join(tmpdir(), 'vmm-manifest-fuzz-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
writeFileSync(join(dir, 'g.bin'), helloGuest)
const names = ['main.yaml', 'board.yaml', 'extra.yaml']

const seeds = [
  'include: board.yaml\nmachine:\n  memory: 2MiB\ncomponents:\n  link:\n    peers: [uart, uart2]\n  uart2:\n    type: test-port\n  regs:\n    type: test-mmio\n',
  'machine:\n  memory: 1MiB\n  irqchip: true\n  vcpus: 1\ncomponents:\n  uart:\n    type: test-port\n    resources: { ports: 0x3f8 }\n  link:\n    type: test-link\n    parent: uart\n  guest:\n    type: raw-image\n    file: g.bin\n    address: 0x7c00\n',
  'include: [extra.yaml, main.yaml]\nplugins: []\ncomponents:\n  bar:\n    type: test-bar\n  dbg:\n    type: debugcon\n    output: none\n    resources: { port: 0xe9 }\n',
]
const yamlish = fc.constantFrom(
  ':',
  ' ',
  '\n',
  '  ',
  '-',
  '[',
  ']',
  '{',
  '}',
  ',',
  '#',
  '&a',
  '*a',
  '!!str',
  '"',
  "'",
  '|',
  '>',
  '?',
  'include: ',
  'type: ',
  'memory: ',
  '0x',
  '1GiB',
  '-1',
  'null',
  '~',
  'true',
  '1e309',
  '\t',
  'components:',
  'machine:',
  'uart',
  'main.yaml',
  'board.yaml',
  'nope.yaml',
  '<<: *a',
  '\u0000',
  '\ufeff',
  '💥',
)
const edit = fc.oneof(
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    text: fc.oneof(yamlish, fc.string({ maxLength: 8 })),
  }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), text: fc.nat({ max: 40 }).map(String) }),
  fc.record({
    kind: fc.constant('value' as const),
    at: fc.nat(),
    text: fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
  }),
)
function apply(text: string, edits: { kind: string; at: number; text: string }[]): string {
  for (const e of edits) {
    const at = text.length === 0 ? 0 : e.at % (text.length + 1)
    if (e.kind === 'insert') text = text.slice(0, at) + e.text + text.slice(at)
    else if (e.kind === 'delete') text = text.slice(0, at) + text.slice(at + Number(e.text))
    else {
      // Replace the value after the next ': ' with a random JSON value (JSON is YAML).
      const colon = text.indexOf(': ', at)
      if (colon < 0) continue
      const end = text.indexOf('\n', colon)
      text = text.slice(0, colon + 2) + e.text + (end < 0 ? '' : text.slice(end))
    }
  }
  return text
}

const schemas = new SchemaCache()
const registry = testRegistry()

describe('manifest YAML errors (regressions found by the property below)', () => {
  it('an alias to an anchor never set is a ManifestError naming the file, not a ReferenceError', async () => {
    writeFileSync(join(dir, 'alias.yaml'), 'machine:\n  memory: 1MiB\n<<: *a\ncomponents: {}\n')
    let error: unknown
    try {
      await resolveManifest(readManifest(join(dir, 'alias.yaml')), registry, { schemas })
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(ManifestError)
    expect((error as Error).message).toMatch(/alias\.yaml:\d+:\d+: YAML error: Unresolved alias/)
  })
})

describe('manifests with random edits and includes (fast-check)', () => {
  it('only a ManifestError escapes, and each diagnostic names a given file, a line and a message', async () => {
    await fuzz(
      (p) =>
        fc.assert(
          fc.asyncProperty(
            fc.array(fc.array(edit, { maxLength: 6 }), { minLength: 3, maxLength: 3 }),
            async (edits) => {
              const texts = seeds.map((s, i) => apply(s, edits[i]!))
              for (const [i, t] of texts.entries()) writeFileSync(join(dir, names[i]!), t)
              try {
                await resolveManifest(readManifest(join(dir, 'main.yaml')), registry, { schemas })
              } catch (e) {
                if (!(e instanceof ManifestError)) throw e
                for (const d of e.diagnostics) {
                  expect(d.message.length).toBeGreaterThan(0)
                  expect(d.line).toBeGreaterThanOrEqual(0)
                  expect(d.column).toBeGreaterThanOrEqual(0)
                  if (d.file !== '<manifest>') expect(names.map((n) => join(dir, n))).toContain(d.file)
                }
              }
            },
          ),
          p,
        ),
      100,
    )
  })
})

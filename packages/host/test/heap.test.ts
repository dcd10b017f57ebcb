// The C heap policy (src/heap.ts, src/native/heap.cc), in child processes that do what the Linux
// loader does: free one large buffer (the kernel image), then make and free several smaller ones
// (an inflated initrd). Without the fixed threshold glibc serves those from the brk heap, where
// they stay resident; with it they are mapped and unmapped.
import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'

// The built module (pnpm test builds first): a child process cannot import TypeScript on Node 20.
const host = new URL('../dist/index.js', import.meta.url).href

function heapAfterLoad(tune: boolean): number {
  const script = `
    import { readFileSync } from 'node:fs'
    const { trimHeap, tuneHeap } = await import(${JSON.stringify(host)})
    if (${tune}) if (!tuneHeap({ mmapThreshold: 128 * 1024 })) throw new Error('tuneHeap refused')
    let big = Buffer.alloc(18 << 20, 1); big = undefined; gc()
    let parts = Array.from({ length: 6 }, () => Buffer.alloc(3 << 20, 2)); parts = undefined; gc()
    const heap = readFileSync('/proc/self/smaps', 'utf8').split(/\\n(?=[0-9a-f]+-)/).find((m) => m.includes('[heap]'))
    console.log(Number(/\\nRss:\\s+(\\d+)/.exec(heap ?? '')?.[1] ?? 0))
    if (typeof trimHeap() !== 'boolean') throw new Error('trimHeap')
  `
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], {
    encoding: 'utf8',
  })
  if (r.status !== 0) throw new Error(r.stderr)
  return Number(r.stdout.trim())
}

describe('tuneHeap', () => {
  it('keeps freed large buffers out of the brk heap', () => {
    const untuned = heapAfterLoad(false)
    const tuned = heapAfterLoad(true)
    console.log(`[heap] after the loader's pattern: untuned ${untuned} KiB, tuned ${tuned} KiB`)
    expect(untuned).toBeGreaterThan(9 * 1024) // KiB: most of the 18 MiB of 3 MiB buffers stayed in [heap]
    expect(tuned).toBeLessThan(6 * 1024)
  })
})

// A minimal cpio "newc" writer for tests (buffer-format.rst): entries then TRAILER!!!.
export function newc(entries: [string, Uint8Array][]): Uint8Array {
  const parts: Uint8Array[] = []
  let length = 0
  const push = (b: Uint8Array) => {
    parts.push(b)
    length += b.length
  }
  const pad = () => push(new Uint8Array((4 - (length % 4)) % 4))
  for (const [name, data] of [...entries, ['TRAILER!!!', new Uint8Array()] as [string, Uint8Array]]) {
    const f = (n: number) => n.toString(16).padStart(8, '0')
    const mode = name === 'TRAILER!!!' ? 0 : 0o100644
    const fields = [1, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length + 1, 0]
    push(new TextEncoder().encode(`070701${fields.map(f).join('')}${name}\0`))
    pad()
    push(data)
    pad()
  }
  const out = new Uint8Array(length)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

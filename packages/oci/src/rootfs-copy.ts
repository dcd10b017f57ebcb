// Development fallback while @vmm/virtio has no virtio-9p device: the rootfs packed under
// /rootfs into a second cpio archive appended to the container initramfs (the kernel unpacks
// concatenated archives in order, Documentation/driver-api/early-userspace/buffer-format.rst).
// A copy: the container's writes do not reach root.path, so `docker diff` cannot see them. With
// virtio-9p (create.ts's have9p()) this file is not used.
import { lstatSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type CpioEntry, gzipCpio, writeCpio } from '@vmm/image'

function walk(root: string, rel: string, out: CpioEntry[]): void {
  for (const name of readdirSync(join(root, rel)).sort()) {
    const r = rel ? `${rel}/${name}` : name
    const st = lstatSync(join(root, r))
    const path = `rootfs/${r}`
    const mode = st.mode & 0o7777
    if (st.isDirectory()) {
      out.push({ type: 'dir', path, mode })
      walk(root, r, out)
    } else if (st.isSymbolicLink()) out.push({ type: 'symlink', path, target: readlinkSync(join(root, r)) })
    else if (st.isFile()) out.push({ type: 'file', path, data: readFileSync(join(root, r)), mode })
  }
}

export function copyRootfsInitrd(base: string, rootfs: string, out: string): void {
  const entries: CpioEntry[] = [{ type: 'dir', path: 'rootfs' }]
  walk(rootfs, '', entries)
  writeFileSync(out, Buffer.concat([readFileSync(base), gzipCpio(writeCpio(entries))]))
}

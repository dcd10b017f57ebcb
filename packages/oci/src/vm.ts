// The framework parts a container VM is made of, loaded on demand (a runtime call that makes no VM
// never loads them): the registry with the micro board's and virtio's components, /dev/kvm, and
// @vmm/host with the C heap's policy as `vmm run` sets it (packages/cli/src/heap.ts: the loader's
// 18 MB kernel image would otherwise raise glibc's mmap threshold and keep the inflated initrd
// resident). Used by the sandbox (boot or restore) and by the template's build.
import type { ComponentRegistry, Hypervisor, Machine } from '@vmm/core'

export interface Vmm {
  Machine: typeof Machine
  registry: ComponentRegistry
  hypervisor: Hypervisor
  host: typeof import('@vmm/host')
}

export async function openVmm(): Promise<Vmm> {
  const [{ ComponentRegistry, Machine, registerBuiltins }, kvm, micro, virtio, host] = await Promise.all([
    import('@vmm/core'),
    import('@vmm/kvm'),
    import('@vmm/board-micro'),
    import('@vmm/virtio'),
    import('@vmm/host'),
  ])
  const registry = registerBuiltins(new ComponentRegistry())
  micro.register(registry)
  virtio.registerVirtio(registry)
  host.tuneHeap({ mmapThreshold: host.VMM_MMAP_THRESHOLD })
  return { Machine, registry, hypervisor: await kvm.hypervisorProvider.open(), host }
}

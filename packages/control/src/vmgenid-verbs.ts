// The VM Generation ID over QMP: QEMU's `query-vm-generation-id` (qapi/machine.json, GuidInfo
// {guid}), answered from the machine's vmgenid component (@vmm/board-standard), found by shape so
// this package need not depend on the board. Like QEMU, there is no command to set the ID: it
// changes by itself on every restore (a clone), and an embedder calls the component's
// newGeneration() for a copy made some other way.
import type { Controller, Verb } from './controller.js'
import { CommandError } from './errors.js'

/** A VM Generation ID device as the controller sees it. */
interface GenerationIdSource {
  readonly guid: string
  newGeneration(): string
}

function generationIdOf(c: Controller): GenerationIdSource {
  for (const b of c.machine.components) {
    const i = b.instance as Partial<GenerationIdSource>
    if (typeof i?.guid === 'string' && typeof i.newGeneration === 'function') return i as GenerationIdSource
  }
  // QEMU's words (hw/acpi/vmgenid.c) for a machine without the device.
  throw new CommandError('GenericError', 'VM Generation ID device not found')
}

export const VMGENID_VERBS: Record<string, Verb> = {
  'query-vm-generation-id': {
    description: "the VM Generation ID as a GUID (the 16 bytes the guest reads, in QEMU's text form)",
    args: { args: {} },
    returns: { object: { guid: 'str' } },
    run: (c) => ({ guid: generationIdOf(c).guid }),
  },
}

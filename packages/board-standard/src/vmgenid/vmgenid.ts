// The `vmgenid` component type: the VmGenId of ./device.ts, described in the DSDT of the acpi
// component it names and notified through that component's Generic Event Device.
import { type ComponentType, ContainerModule, referenceToken, Tokens } from '@vmm/core'
import { type AcpiDeviceHost, VmGenId, type VmGenIdConfig } from './device.js'
import { GUID_PATTERN, VMGENID_SIZE } from './guid.js'

/** The default place of the ID: the last page of the BIOS area (the ACPI tables start at 0xE0000). */
export const VMGENID_DEFAULT_ADDRESS = 0xff000
// [0xA0000, 1 MiB): below 1 MiB and above any EBDA, the range the linux component's e820 map leaves out.
const LEGACY_AREA = { base: 0xa0000, end: 0x100000 }

export const vmgenidType: ComponentType<VmGenIdConfig> = {
  name: 'vmgenid',
  description:
    'VM Generation ID (Microsoft, 2012): a 16-byte ID in guest memory that a restore or clone changes, with an ACPI notification; Linux then reseeds its RNG',
  schema: {
    properties: {
      acpi: {
        type: 'string',
        description: 'the acpi component: its DSDT describes the device, its GED notifies it',
      },
      address: {
        type: 'integer',
        default: VMGENID_DEFAULT_ADDRESS,
        minimum: LEGACY_AREA.base,
        maximum: LEGACY_AREA.end - VMGENID_SIZE,
        multipleOf: 8,
        description:
          'guest physical address of the 16 bytes: 8-byte aligned, in [0xA0000, 1 MiB), which the e820 map leaves out, clear of the ACPI tables',
      },
      guid: {
        type: 'string',
        default: 'auto',
        anyOf: [{ const: 'auto' }, { pattern: GUID_PATTERN }],
        description:
          'the first ID: auto (128 random bits) or a GUID; every restore replaces it with a random one',
      },
    },
    required: ['acpi'],
  },
  references: [{ property: 'acpi', types: ['acpi'] }],
  // The ID's bytes must be guest RAM (R1b).
  resources: (config) => [{ kind: 'ram', name: 'id', base: config.address, size: VMGENID_SIZE }],
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).toDynamicValue(
      (ctx) =>
        new VmGenId(
          ctx.get(Tokens.Id),
          ctx.get(Tokens.Config) as unknown as VmGenIdConfig,
          ctx.get(Tokens.GuestMemory),
          ctx.get(Tokens.MachineControl),
          ctx.get<AcpiDeviceHost>(referenceToken('acpi')),
        ),
    )
  }),
}

// The `raw-image` component type: the RawImage loader of ./device.ts, with the RAM it is loaded into.

import { type ComponentType, ConfigError } from '../../component/component-type.js'
import { checkInputFile } from '../../component/input-file.js'
import { Tokens } from '../../component/tokens.js'
import { addressSchema, pathSchema } from '../../manifest/schema.js'
import { ContainerModule } from '../../third-party/inversify.js'
import { RawImage, type RawImageConfig } from './device.js'

export const rawImageType: ComponentType<RawImageConfig> = {
  name: 'raw-image',
  description: 'a raw binary loaded at a guest address and entered in 16-bit real mode',
  schema: {
    properties: {
      file: { ...pathSchema, description: 'the binary, relative to the manifest' },
      address: { ...addressSchema, description: 'guest physical load address' },
      entry: {
        type: 'object',
        additionalProperties: false,
        required: ['cs', 'ip'],
        properties: {
          cs: { type: 'integer', minimum: 0, maximum: 0xffff },
          ip: { type: 'integer', minimum: 0, maximum: 0xffff },
        },
      },
      vcpu: { type: 'integer', minimum: 0, default: 0 },
    },
    required: ['file', 'address'],
  },
  resources(config) {
    const { size } = checkInputFile('file', 'raw image', config.file)
    if (config.address >= 0x10_0000 + 0xfff0)
      throw new ConfigError('address', 'a real-mode guest must be loaded below 0x10fff0')
    return [{ kind: 'ram', name: 'image', base: config.address, size }]
  },
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).to(RawImage)
  }),
}

// A vmm device plugin: one I/O port that answers, on every read, the byte the manifest configures,
// and can tell another component (any PIO device here) about each read. docs/plugins.md walks
// through it line by line.
import {
  type ComponentType,
  ContainerModule,
  inject,
  injectable,
  type MachineControl,
  type PioDevice,
  type PLUGIN_API_VERSION,
  type PluginRegistry,
  Tokens,
} from '@vmm/core'

export interface AnswerConfig {
  /** The byte a read returns. */
  value: number
}

@injectable()
export class Answer implements PioDevice {
  // Every parameter names its token: tools that emit no decorator metadata (esbuild, Vitest) work too.
  constructor(
    @inject(Tokens.Config) private readonly config: AnswerConfig,
    @inject(Tokens.Id) private readonly id: string,
    @inject(Tokens.MachineControl) private readonly machine: MachineControl,
  ) {}

  read(_offset: number, data: Uint8Array): void {
    data.fill(this.config.value)
    this.machine.report(this.id, 'read', { value: this.config.value })
  }

  write(_offset: number, _data: Uint8Array): void {} // read-only, writes are ignored
}

export const answerType: ComponentType<AnswerConfig> = {
  name: 'answer',
  description: 'A port that answers a configured byte on every read',
  schema: {
    properties: { value: { type: 'integer', minimum: 0, maximum: 255, default: 42 } },
  },
  resources: () => [{ kind: 'pio', name: 'port', size: 1 }],
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).to(Answer)
  }),
}

/** The plugin API this plugin is written for; vmm refuses a plugin written for another. */
export const vmmPluginApi: typeof PLUGIN_API_VERSION = 1

export function register(registry: PluginRegistry): void {
  registry.register(answerType)
}

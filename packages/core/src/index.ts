// @vmm/core: the component framework. Importing it loads reflect-metadata, which InversifyJS needs
// before any @injectable class is defined, so plugins get it by importing core first.
import './third-party/reflect-metadata.js'

export { addressAdd, GUEST_ADDRESS_LIMIT, type GuestAddress, guestAddress, hex } from './address.js'
export { isBusDevice, type MmioDevice, type PioDevice, type UnhandledAccess } from './bus/device.js'
export { BusError, type BusErrorCode } from './bus/errors.js'
export { MmioBus } from './bus/mmio-bus.js'
export { PioBus } from './bus/pio-bus.js'
export {
  type CharBackend,
  type CharBackendKind,
  type CharBackendPolicy,
  FileCharBackend,
  listenUnixSocket,
  OutputBatcher,
  openCharBackend,
  SocketCharBackend,
  type SocketOptions,
  StdioCharBackend,
  type StdioOptions,
  UnixSocketError,
  type UnixSocketListener,
} from './chardev/index.js'
export {
  type ConfigPinner,
  type Disposable,
  type Hotpluggable,
  isConfigPinner,
  isDisposable,
  isHotpluggable,
  isKernelCmdlineContributor,
  isLoadable,
  isPausable,
  isResettable,
  isShutdownRequester,
  isSnapshottable,
  isStartable,
  isStoppable,
  type KernelCmdlineContributor,
  type Loadable,
  type LoadContext,
  type Pausable,
  type Resettable,
  type ShutdownRequester,
  type Snapshottable,
  type Startable,
  type Stoppable,
} from './component/capabilities.js'
export {
  type Component,
  type ComponentType,
  ConfigError,
  type JsonSchema,
  type ReferenceSpec,
  type ResourceContext,
  type ResourceRequest,
} from './component/component-type.js'
export { checkInputFile, errnoWords, type InputFile } from './component/input-file.js'
export { ComponentRegistry, RegistryError } from './component/registry.js'
export { ComponentResources, type Window } from './component/resources.js'
export { SavedState } from './component/saved-state.js'
export { type GuestStopKind, type MachineControl, referenceToken, Tokens } from './component/tokens.js'
export { registerBuiltins } from './components/builtins.js'
export { Debugcon, type DebugconConfig, debugconType } from './components/debugcon/index.js'
export { RawImage, type RawImageConfig, rawImageType } from './components/raw-image/index.js'
export type * from './hypervisor.js'
export { type InterruptLine, IrqChipLine } from './irq/interrupt-line.js'
export { GUEST_PANIC_EXIT_CODE } from './machine/exit-policy.js'
export { GuestMessageLimiter, type GuestMessageLimits, guestMessages } from './machine/guest-messages.js'
export {
  type BuiltComponent,
  ComponentError,
  type ComponentTiming,
  describeThrown,
  Machine,
  type MachineEvent,
  type MachineOptions,
  type MachineResult,
  type MachineState,
} from './machine/machine.js'
export {
  type Diagnostic,
  formatDiagnostic,
  ManifestError,
  type SourcePosition,
} from './manifest/diagnostics.js'
export { graphDot, graphText, printEffective } from './manifest/print.js'
export {
  type MachineConfig,
  type ResolvedComponent,
  type ResolvedManifest,
  resolveManifest,
} from './manifest/resolve.js'
export {
  addressSchema,
  manifestSchema,
  pathSchema,
  SchemaCache,
  sizeSchema,
  type Validator,
} from './manifest/schema.js'
export { formatSize, parseSize } from './manifest/size.js'
export { type ManifestSource, manifestFromObject, readManifest } from './manifest/source.js'
export {
  AddressSpace,
  type FlatRange,
  flatten,
  MemoryRegion,
  type RegionKind,
  type SlotChanges,
  type SlotRange,
} from './memory/address-space.js'
export { FlatMemory, type MemoryHole } from './memory/flat-memory.js'
export {
  type ByteCodec,
  type GuestMemory,
  GuestMemoryError,
  type GuestMemoryErrorCode,
  type MemorySegment,
  type RamRange,
  SegmentedMemory,
} from './memory/guest-memory.js'
export { RamBacking } from './memory/ram-backing.js'
export {
  loadPlugin,
  PLUGIN_API_VERSION,
  PluginError,
  type PluginErrorCode,
  type PluginRegistry,
  type VmmPlugin,
} from './plugin/loader.js'
// Snapshot files: format, readable encoding, the state's shape and the host checks.
export * from './snapshot/index.js'
// Plugins build components with these; taking them from core keeps one InversifyJS in a machine.
export { ContainerModule, inject, injectable } from './third-party/inversify.js'

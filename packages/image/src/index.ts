export { cacheRoot, contentKey } from './cache.js'
export { runImageCommand } from './cli-main.js'
export { type ContainerGuest, containerInitramfsEntries, ensureContainerGuest } from './container.js'
export { type CpioEntry, type CpioOptions, gzipCpio, writeCpio } from './cpio.js'
export {
  BUILDER_VERSION,
  cleanDefaultGuest,
  type DefaultGuest,
  ensureDefaultGuest,
  ensureEntry,
  findDefaultGuest,
  type GuestOptions,
  linkDefaultGuest,
  SUGGESTED_CMDLINE,
} from './guest.js'
export { MissingHostPackagesError } from './host.js'
export { checkKconfig, parseKconfig } from './kconfig.js'
export { KernelBuildError } from './kernel.js'
export type { ProgressEvent, Stage } from './progress.js'
export { bzImageProtocol, pvhEntry } from './verify.js'

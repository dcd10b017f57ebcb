export { addonCandidates, addonHelp, loadAddon } from './addon.js'
export { blockDeviceSize, lockDiskImage } from './disk.js'
export { EventFd } from './eventfd.js'
export { type HeapTuning, trimHeap, tuneHeap, VMM_MMAP_THRESHOLD } from './heap.js'
export { jailHelperPath } from './jail.js'
export { makeFifoOrSocket } from './mknod.js'
export { deallocateFileRange, discardGuestPages } from './pages.js'
export { openPty, type PtyPair, sendFd } from './pty.js'
export {
  applySeccomp,
  type Confinable,
  type RecordedCall,
  SECCOMP_EXIT_CODE,
  type Seccomp,
  type SeccompOptions,
  seccompPrograms,
} from './seccomp/index.js'
export { Tap, TapOffload } from './tap.js'

// Snapshot files: the format (files.ts), its readable encoding (codec.ts) and the state's shape
// and host checks (state.ts).
export { decodeState, encodeState, SnapshotError } from './codec.js'
export {
  parseHeader,
  type ReadSnapshot,
  readSnapshot,
  SNAPSHOT_FORMAT,
  SNAPSHOT_VERSION,
  type SnapshotHeader,
  writeSnapshot,
} from './files.js'
export { hostCpuModel, type SnapshotSource, snapshotMachine, snapshotRefusals } from './machine.js'
export { applyOverrides, type ComponentOverride, describeOverride, parseOverride } from './overrides.js'
export {
  type LoadedSnapshot,
  loadSnapshot,
  type RestoreOptions,
  type RestoreTarget,
  resolveRestoredManifest,
  restoreInto,
} from './restore.js'
export {
  checkState,
  type FileFingerprint,
  hostMismatches,
  type MachineSnapshotState,
  TSC_TOLERANCE_PPM,
} from './state.js'

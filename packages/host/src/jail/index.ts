// @vmm/host/jail: the parts of a jail that do not depend on who asks for it (`vmm run`/`vmm jail`
// in @vmm/cli, the OCI runtime's sandbox in @vmm/oci): the plan vmm-jail carries out (plan.ts),
// what Node itself needs bound in (runtime.ts, runtime-files.ts), and the VMM's own drop of ids
// before the guest's first instruction (drop.ts). A separate entry point, so `vmm run`'s start-up
// (the bundled @vmm/host) loads none of it.
export { jailHelperPath } from '../jail.js'
export { dropEnv, dropIds, dropsToUid } from './drop.js'
export { checkPlanPath, JailUsageError, permits } from './errors.js'
export {
  CAP_NET_ADMIN,
  type Device,
  hostDevices,
  type JailPlan,
  jailEnv,
  PASSED_ENV,
  planText,
  SHARE_CAPS,
  tidyBinds,
  tidyLinks,
} from './plan.js'
export {
  type Bind,
  type Link,
  linksAlong,
  lookupPackage,
  nativeAddons,
  nodeRuntime,
  packageClosure,
  packageRoot,
  sharedLibraries,
} from './runtime.js'
export { type RuntimeFiles, runtimeFiles } from './runtime-files.js'

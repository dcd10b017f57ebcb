// Kept so that importers of './mmio/kvm.js' build while the device folders move (issue 12): the
// accelerator now works over core's vm.notifiers, for any hypervisor (accelerator.ts).
export { acceleratorFor } from './accelerator.js'

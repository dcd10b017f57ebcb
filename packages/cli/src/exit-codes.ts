// What `vmm`'s exit status means, in one place (the README's "Exit codes" table says the same).
// The guest's own code passes through: a debug-exit device, or the serial console's Ctrl-A x (0),
// ends the run with whatever code the guest asked for, so a harness that drives a guest through
// debug-exit should keep its codes clear of 1-3 to tell them from vmm's own.

/** The run ended cleanly: the guest powered off, reset, halted, or was stopped by a signal. */
export const EXIT_OK = 0
/**
 * vmm or the host failed: the hypervisor could not be opened, a file could not be read, a device
 * faulted, KVM could not run the vCPU (internal error, failed VM entry).
 */
export const EXIT_HOST_FAILURE = 1
/** The command line or the manifest is wrong (usage error, ManifestError): nothing was started. */
export const EXIT_USAGE = 2
/**
 * The guest failed: its kernel panicked (pvpanic, the panic notifier on the console) or it
 * triple-faulted. Equal to @vmm/core's GUEST_PANIC_EXIT_CODE, which MachineResult.code carries
 * (test/exit-codes.test.ts checks they agree; the CLI does not load core to print `--help`).
 */
export const EXIT_GUEST_FAILURE = 3
/**
 * A seccomp filter denied a system call (128 + SIGSYS, as if the kernel had killed the process):
 * stderr names the call and the thread. Equal to @vmm/host's SECCOMP_EXIT_CODE (the SIGSYS
 * handler exits with it; test/exit-codes.test.ts checks they agree).
 */
export const EXIT_SECCOMP = 159

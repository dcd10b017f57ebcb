// The shared test fixtures live in @vmm/core/testing; this file keeps the package's tests' imports short.
export { fixture, helloGuest } from '@vmm/core/testing'

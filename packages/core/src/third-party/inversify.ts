// Core's one way to InversifyJS; see ./README.md for why this folder exists. Plugins take inject,
// injectable and ContainerModule from @vmm/core, so a machine has a single copy.
export { Container, ContainerModule, inject, injectable } from 'inversify'

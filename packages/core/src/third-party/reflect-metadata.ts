// The Reflect metadata polyfill InversifyJS needs before any @injectable class is defined; see
// ./README.md for why it is imported through here.
import 'reflect-metadata'

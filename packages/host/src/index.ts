export { addonCandidates, addonHelp, loadAddon } from './addon.js'
export { EventFd } from './eventfd.js'
export { deallocateFileRange, discardGuestPages } from './pages.js'
export { Tap, TapOffload } from './tap.js'

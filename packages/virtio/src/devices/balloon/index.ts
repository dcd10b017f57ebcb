// virtio-balloon: the model (device.ts) and its catalogue entry (balloon.ts).

export * from './balloon.js'
export * from './device.js'

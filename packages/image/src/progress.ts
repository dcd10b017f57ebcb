// Progress reports of the default guest build, for a display (the CLI's) or a log.

/** The steps of a build, in the order they happen. */
export type Stage =
  | 'resolve' // package versions and cache keys
  | 'wait' // another process holds the build lock
  | 'download' // apt-get download + dpkg-deb -x
  | 'extract' // unpacking the kernel source
  | 'configure' // tinyconfig + fragment
  | 'compile' // make vmlinux bzImage
  | 'verify' // .config against the fragment, PVH note, bzImage header
  | 'initramfs' // busybox + /init into a cpio archive
  | 'done'

export interface ProgressEvent {
  stage: Stage
  message: string
  /** 0..1 where the stage can tell (the compile, from make's output); absent otherwise. */
  fraction?: number
}

// The files a manifest hands the VMM (kernels, initrds, raw images, disk images) are checked when
// the manifest is validated, so `vmm validate` answers a bad path with the property and the path,
// never a bare EISDIR or a stack trace (issue 13 items 7, 9). `""` resolves to the manifest's own
// directory, so an empty path reads as "a directory" here and is called out as empty.
import { type Stats, statSync } from 'node:fs'
import { ConfigError } from './component-type.js'

export interface InputFile {
  readonly size: number
  /** A block device (a disk may be one; its size comes from BLKGETSIZE64, not st_size). */
  readonly blockDevice: boolean
}

/**
 * Checks that `path` (property `property` of the manifest node, described as `what`) names a file
 * vmm can read: it exists, it is a regular file (or a block device where `allowBlockDevice`), not
 * a directory. Throws a ConfigError naming the property and the path.
 */
export function checkInputFile(
  property: string,
  what: string,
  path: string,
  options: { allowBlockDevice?: boolean; hint?: string } = {},
): InputFile {
  let stat: Stats
  try {
    stat = statSync(path)
  } catch (e) {
    throw new ConfigError(property, `${what} ${path}: ${errnoWords(e)}${options.hint ?? ''}`)
  }
  if (stat.isDirectory())
    throw new ConfigError(
      property,
      `${what} ${path} is a directory, not a file (is the path empty or a typo?)`,
    )
  if (stat.isBlockDevice() && options.allowBlockDevice) return { size: stat.size, blockDevice: true }
  if (!stat.isFile())
    throw new ConfigError(
      property,
      `${what} ${path} is not a regular file${options.allowBlockDevice ? ' or a block device' : ''}`,
    )
  return { size: stat.size, blockDevice: false }
}

/** An errno failure in words, with its code: "does not exist (ENOENT)". */
export function errnoWords(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code
  switch (code) {
    case 'ENOENT':
      return 'does not exist (ENOENT)'
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${code})`
    case 'EISDIR':
      return 'is a directory (EISDIR)'
    case 'ENOTDIR':
      return 'a component of the path is not a directory (ENOTDIR)'
    case 'ELOOP':
      return 'too many symbolic links (ELOOP)'
    default:
      return e instanceof Error ? e.message : String(e)
  }
}

import {statfsSync, statSync} from 'node:fs'

/** argv that runs `argv` inside the network namespace at `path`. */
export function nsenterArgv(path: string, argv: string[]): string[] {
  if (!path || path.includes('\0')) throw new Error(`invalid netns path ${JSON.stringify(path)}`)
  return ['nsenter', `--net=${path}`, '--', ...argv]
}

/** True when path exists (a bind-mounted netns file or /proc/<pid>/ns/net). */
export function netnsExists(path: string): boolean {
  if (!path) return false
  try {
    statSync(path)
    return true
  } catch {
    return false
  }
}

/** The "no such netns" errors nsenter prints when the path vanished. */
export function isNetnsGoneError(msg: string): boolean {
  return /nsenter: (cannot open|reassociate to namespace).*(No such file|Invalid argument)/i.test(msg)
}

const NSFS_MAGIC = 0x6e736673
const PROC_SUPER_MAGIC = 0x9fa0

/** True when path is a network namespace file (nsfs, or procfs on old kernels). */
export function isNetns(path: string): boolean {
  if (!path) return false
  try {
    const t = statfsSync(path).type
    return t === NSFS_MAGIC || t === PROC_SUPER_MAGIC
  } catch {
    return false
  }
}

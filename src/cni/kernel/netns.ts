import {statSync} from 'node:fs'

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

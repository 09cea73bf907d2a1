import {readFileSync, readlinkSync, statfsSync, statSync} from 'node:fs'

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

/**
 * A path that never names a network namespace (/proc/0 never exists). It is
 * handed to DEL instead of a netns nobody can vouch for, so that every
 * plugin takes its "netns is gone" path.
 */
export const GONE_NETNS = '/proc/0/ns/net'

/** The netns file of a process. */
export function procNetnsPath(pid: number): string {
  return `/proc/${pid}/ns/net`
}

const PROC_NETNS = /^\/proc\/\d+\/(task\/\d+\/)?ns\/net$/

/**
 * True for a process's netns file (`/proc/<pid>[/task/<tid>]/ns/net`). Such a
 * path outlives nothing: once the process is gone its pid can be reused by
 * any process, even one in the host's netns. Named netns files (bind mounts)
 * stay valid while they exist.
 */
export function isProcNetnsPath(path: string): boolean {
  return PROC_NETNS.test(path)
}

/** The identity of the network namespace at path, as `net:[inode]`, or undefined when it cannot be read (gone). */
export function netnsInode(path: string): string | undefined {
  try {
    return readlinkSync(path)
  } catch {
    return undefined
  }
}

/**
 * What a process's netns is: `own` (a netns of its own), `host` (the same as
 * init's or ours: host networking), or `gone` (the process or its netns file
 * cannot be read; it may have just exited).
 */
export type TaskNetnsState = 'own' | 'host' | 'gone'

export function taskNetnsState(pid: number): TaskNetnsState {
  if (!Number.isInteger(pid) || pid <= 0) return 'gone'
  const inode = netnsInode(procNetnsPath(pid))
  if (!inode) return 'gone'
  if (inode === netnsInode('/proc/self/ns/net') || inode === netnsInode('/proc/1/ns/net')) return 'host'
  return 'own'
}

/**
 * The one rule for entering a task's network namespace: its
 * `/proc/<pid>/ns/net`, only while the process lives and its netns is
 * neither the host's (init's) nor ours. Anything else is undefined: never
 * enter the netns of a dead task (its pid may belong to another process by
 * now), nor the host's.
 */
export function taskNetns(pid: number | undefined): string | undefined {
  return pid !== undefined && taskNetnsState(pid) === 'own' ? procNetnsPath(pid) : undefined
}

/**
 * The netns a DEL of an attachment recorded in `recorded` may enter: the
 * recorded path when it is the live netns of task `pid` (see taskNetns),
 * else GONE_NETNS.
 */
export function netnsForDel(recorded: string | undefined, pid: number | undefined): string {
  return recorded && recorded === taskNetns(pid) ? recorded : GONE_NETNS
}

/** Interface names present in a process's network namespace (/proc/<pid>/net/dev). */
export function interfacesOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/net/dev`, 'utf8')
      .split('\n')
      .slice(2)
      .map((l) => l.split(':')[0].trim())
      .filter(Boolean)
  } catch {
    return []
  }
}

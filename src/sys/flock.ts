import {spawn} from 'node:child_process'
import {closeSync, constants, mkdirSync, openSync} from 'node:fs'
import {dirname} from 'node:path'
import {missingProgram} from './exec.js'

/**
 * An exclusive flock(2) on a file, held by this process.
 *
 * Node has no flock binding, so we open the file and let util-linux `flock`
 * lock that open file description as its fd 3. A flock belongs to the open
 * file description, not to the process that called flock(2): once the helper
 * exits, our still-open fd keeps the lock until we close it or die. This is
 * the same lock nerdctl (`.nerdctl.lock`) and host-local (`<net>/lock`) take.
 */
export class FileLock {
  private constructor(private fd: number | undefined, readonly path: string) {}

  static async acquire(path: string, opts: {mode?: number; timeoutMs?: number} = {}): Promise<FileLock> {
    mkdirSync(dirname(path), {recursive: true})
    const fd = openSync(path, 'a', opts.mode ?? 0o600)
    return FileLock.lockOpened(fd, path, opts.timeoutMs)
  }

  /**
   * An exclusive flock(2) on an existing directory itself, opened read-only
   * (O_DIRECTORY, O_NOFOLLOW: a symlink is refused). nerdctl's stores lock this
   * way (pkg/internal/filesystem Lock: os.Open(dir) then flock LOCK_EX), e.g.
   * its hosts store locks <dataStore>/etchosts/<namespace>.
   */
  static async acquireDir(path: string, opts: {timeoutMs?: number} = {}): Promise<FileLock> {
    const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW)
    return FileLock.lockOpened(fd, path, opts.timeoutMs)
  }

  private static async lockOpened(fd: number, path: string, timeoutMs?: number): Promise<FileLock> {
    try {
      await lockFd(fd, timeoutMs ?? 60_000)
    } catch (err) {
      closeSync(fd)
      throw err
    }
    return new FileLock(fd, path)
  }

  /**
   * Takes the lock only if nobody holds it (flock -n): undefined when another
   * open file description holds it.
   */
  static async tryAcquire(path: string, opts: {mode?: number} = {}): Promise<FileLock | undefined> {
    mkdirSync(dirname(path), {recursive: true})
    const fd = openSync(path, 'a', opts.mode ?? 0o600)
    try {
      await lockFd(fd, 0)
    } catch (err) {
      closeSync(fd)
      if (err instanceof LockBusy) return undefined
      throw err
    }
    return new FileLock(fd, path)
  }

  release(): void {
    if (this.fd !== undefined) {
      closeSync(this.fd)
      this.fd = undefined
    }
  }
}

class LockBusy extends Error {}

/** timeoutMs 0: do not wait (flock -n). */
function lockFd(fd: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const secs = Math.max(1, Math.ceil(timeoutMs / 1000))
    const child = spawn('flock', timeoutMs === 0 ? ['-x', '-n', '3'] : ['-x', '-w', String(secs), '3'], {stdio: ['ignore', 'ignore', 'pipe', fd]})
    let stderr = ''
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT' ? missingProgram('flock', 'to take file locks') : new Error(`flock: ${e.message}`)))
    child.on('close', (code) => {
      if (code === 0) resolve()
      else if (code === 1) reject(timeoutMs === 0 ? new LockBusy('the lock is held') : new Error(`timed out after ${secs}s waiting for lock`))
      else reject(new Error(`flock failed: ${stderr.trim() || `exit ${code}`}`))
    })
  })
}

/** Runs fn while holding the lock on path. */
export async function withLock<T>(path: string, fn: () => Promise<T> | T, opts?: {mode?: number; timeoutMs?: number}): Promise<T> {
  const lock = await FileLock.acquire(path, opts)
  try {
    return await fn()
  } finally {
    lock.release()
  }
}

import {closeSync, constants, fstatSync, fsyncSync, ftruncateSync, lstatSync, openSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeSync} from 'node:fs'
import {basename, dirname, join} from 'node:path'
import {randomBytes} from 'node:crypto'

/**
 * Writes a file atomically: a temp file in the same folder
 * (`.<name>.<writer pid>.<12 hex>.tmp`), fsync, chmod, then rename into place (fsync can be skipped for files that only need to
 * survive the process, not the machine). Refuses to replace a symlink (a hostile config dir could
 * point a link at a file outside it).
 */
export function writeFileAtomic(path: string, data: string | Buffer, mode = 0o644, opts: {fsync?: boolean} = {}): void {
  try {
    if (lstatSync(path).isSymbolicLink()) throw new Error(`refusing to overwrite symlink ${path}`)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`)
  const fd = openSync(tmp, 'wx', mode)
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data)
    if (opts.fsync !== false) fsyncSync(fd)
  } catch (err) {
    closeSync(fd)
    rmSync(tmp, {force: true})
    throw err
  }
  closeSync(fd)
  try {
    renameSync(tmp, path)
  } catch (err) {
    rmSync(tmp, {force: true})
    throw err
  }
}

/**
 * Replaces the content of an existing regular file while keeping its inode:
 * for a file that is bind-mounted somewhere (nerdctl's per-container `hosts`
 * file is the /etc/hosts of a running container), a rename would leave the
 * mount on the old inode and the change unseen. This is what nerdctl itself
 * does for that file (pkg/internal/filesystem WriteFile, "does not change inodes").
 *
 * Not a symlink (O_NOFOLLOW), not created when missing, must be a regular file.
 * The new bytes are written from offset 0 before the file is cut to their
 * length, so a reader never sees it empty; then fsync. A crash in the middle
 * can leave new bytes followed by a tail of old ones (a rename cannot be used here).
 */
export function rewriteInPlace(path: string, data: string | Buffer): void {
  const buf = typeof data === 'string' ? Buffer.from(data) : data
  const fd = openSync(path, constants.O_WRONLY | constants.O_NOFOLLOW)
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`refusing to rewrite ${path}: not a regular file`)
    let off = 0
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off, off)
    ftruncateSync(fd, buf.length)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/**
 * Points `path` at `target` atomically: a symlink made under a temp name in
 * the same folder, then renamed over whatever `path` was (a file or a link;
 * never a folder: rename refuses). A link already pointing there is left as
 * it is. Returns whether anything changed.
 */
export function symlinkAtomic(target: string, path: string): boolean {
  try {
    if (readlinkSync(path) === target) return false
  } catch {
    // missing, or not a link: replaced below
  }
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  symlinkSync(target, tmp)
  try {
    renameSync(tmp, path)
  } catch (err) {
    rmSync(tmp, {force: true})
    throw err
  }
  return true
}

/** writeFileAtomic's temp files: `.<name>.<writer pid>.<12 hex>.tmp`. */
const TEMP_RE = /^\..+\.([1-9][0-9]{0,9})\.[0-9a-f]{12}\.tmp$/

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists, as another user
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Removes the temp files of writeFileAtomic in dir whose writer is gone (a
 * process killed between create and rename, e.g. by SIGKILL): the real file
 * was never touched, the temp one is litter. A live writer's temp file
 * stays. Writers in another PID namespace sharing the folder are not told
 * apart (their PIDs look dead here). Returns the names removed.
 */
export function sweepOrphanTemps(dir: string): string[] {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return []
  }
  const removed: string[] = []
  for (const n of names) {
    const m = TEMP_RE.exec(n)
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue
    rmSync(join(dir, n), {force: true})
    removed.push(n)
  }
  return removed
}

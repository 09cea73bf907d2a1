import {closeSync, fsyncSync, lstatSync, openSync, renameSync, rmSync, writeSync} from 'node:fs'
import {basename, dirname, join} from 'node:path'
import {randomBytes} from 'node:crypto'

/**
 * Writes a file atomically: a temp file in the same folder, fsync, chmod, then
 * rename into place (fsync can be skipped for files that only need to
 * survive the process, not the machine). Refuses to replace a symlink (a hostile config dir could
 * point a link at a file outside it).
 */
export function writeFileAtomic(path: string, data: string | Buffer, mode = 0o644, opts: {fsync?: boolean} = {}): void {
  try {
    if (lstatSync(path).isSymbolicLink()) throw new Error(`refusing to overwrite symlink ${path}`)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
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

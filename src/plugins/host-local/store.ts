import {closeSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync} from 'node:fs'
import {randomBytes} from 'node:crypto'
import {join} from 'node:path'
import {writeFileAtomic} from '../../sys/atomic.js'
import {withLock} from '../../sys/flock.js'
import {parseIp} from '../../kernel/ip/addr.js'
import {isNetworkName} from '../../sys/names.js'
import type {IpStore} from './allocator.js'

/**
 * disk.Store of host-local v1.1.1: <dataDir>/<net>/<ip> holding
 * "<id>\r\n<ifname>", last_reserved_ip.<rangeID>, and flock(2) on
 * <dataDir>/<net>/lock (shared with the reference plugin).
 *
 * Crash safety: a lease is written to a temp file in the same directory
 * (`.<ip>.<hex>.tmp`: never parses as an IP, so the reference ignores it),
 * fsynced, then hard-linked to `<ip>` (link(2) never replaces: EEXIST means
 * taken) and the temp name unlinked. A writer killed at any moment leaves
 * either no `<ip>` or a complete one, plus at most a temp file.
 *
 * Garbage: every writer of this store (ctrnet and the reference plugin, whose
 * allocator reserves under the same lock) writes only while holding the lock.
 * So whoever holds the lock knows nobody is mid-write, and an empty or
 * unparseable `<ip>` file (the reference, or an older ctrnet, killed between
 * create and write) or a leftover temp file is garbage. `locked()` removes
 * it before running its function, so DEL, GC and CHECK never see it; ADD
 * removes only the temp files (reading every lease would make its cost grow
 * with the host) and allocates a garbage address again in its normal
 * round-robin order (`reserve` replaces a garbage `<ip>` it runs into).
 */
export const LINE_BREAK = '\r\n'
const LAST_IP_PREFIX = 'last_reserved_ip.'
/** Temp files of this store (and of writeFileAtomic): `.<name>.<12 hex>.tmp`. */
const TMP_RE = /^\..+\.[0-9a-f]{12}\.tmp$/
// a lease file holds text: control characters (but tab and newlines) mark it torn
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/

/**
 * Owner of a lease file: "<id>\r\n<ifname>" (or a bare "<id>" of old
 * versions). Undefined for content no writer produces: empty, control
 * characters (a NUL-filled or torn file), more than two lines.
 */
export function parseLeaseContent(text: string): {containerId: string; ifname?: string} | undefined {
  const t = text.trim()
  if (!t || CONTROL_RE.test(t)) return undefined
  const parts = t.split(LINE_BREAK)
  if (parts.length > 2 || parts.some((x) => /[\r\n]/.test(x))) return undefined
  const containerId = parts[0].trim()
  const ifname = parts[1]?.trim()
  if (!containerId || /\s/.test(containerId) || (ifname && /\s/.test(ifname))) return undefined
  return {containerId, ifname: ifname || undefined}
}

function isIpName(name: string): boolean {
  try {
    parseIp(name)
    return true
  } catch {
    return false
  }
}

export interface Lease {
  ip: string
  containerId: string
  ifname?: string
}

export class DiskStore implements IpStore {
  readonly dir: string

  constructor(dataDir: string, network: string) {
    if (!isNetworkName(network)) throw new Error(`invalid network name ${JSON.stringify(network)}`)
    this.dir = join(dataDir, network)
  }

  /**
   * Runs fn under the store lock (creates the directory 0755 as the
   * reference), after removing the garbage: `all` (DEL, GC, CHECK) reads
   * every lease file; `temp` (ADD) only removes leftover temp files by
   * name, so that an ADD costs the same on a host with 10 leases or 10,000:
   * its allocation reads only the addresses it tries, and `reserve` takes
   * over a garbage `<ip>` it runs into.
   */
  async locked<T>(fn: () => T | Promise<T>, opts: {sweep?: 'all' | 'temp'} = {}): Promise<T> {
    mkdirSync(this.dir, {recursive: true, mode: 0o755})
    return withLock(join(this.dir, 'lock'), () => {
      if (opts.sweep === 'temp') this.reclaimTemps()
      else this.reclaimGarbage()
      return fn()
    }, {mode: 0o750})
  }

  /** The names in the store's directory; none when it cannot be read. */
  private names(): string[] {
    try {
      return readdirSync(this.dir)
    } catch {
      return []
    }
  }

  /** Removes leftover temp files (names only: nothing is read). Only with the lock held. */
  reclaimTemps(): string[] {
    const names = this.names()
    const removed = names.filter((n) => TMP_RE.test(n))
    for (const n of removed) rmSync(join(this.dir, n), {force: true})
    return removed
  }

  /**
   * Removes leftover temp files and empty or unparseable lease files.
   * Only with the lock held (see the header). Returns the names removed.
   */
  reclaimGarbage(): string[] {
    const names = this.names()
    const removed: string[] = []
    for (const name of names) {
      const p = join(this.dir, name)
      try {
        if (!statSync(p).isFile()) continue
        if (TMP_RE.test(name) || (isIpName(name) && !parseLeaseContent(readFileSync(p, 'utf8')))) {
          rmSync(p, {force: true})
          removed.push(name)
        }
      } catch {
        // vanished or unreadable: leave it
      }
    }
    return removed
  }

  /** True when `<ip>` exists and holds an owner (a garbage file counts as free). */
  private taken(fname: string): boolean {
    try {
      return parseLeaseContent(readFileSync(fname, 'utf8')) !== undefined
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw e
    }
  }

  /** Creates `fname` with `data`, complete or not at all: temp + fsync + link (no replace). */
  private createComplete(fname: string, name: string, data: string): boolean {
    const tmp = join(this.dir, `.${name}.${randomBytes(6).toString('hex')}.tmp`)
    const fd = openSync(tmp, 'wx', 0o644)
    try {
      try {
        writeSync(fd, Buffer.from(data))
        fsyncSync(fd)
      } finally {
        closeSync(fd)
      }
      linkSync(tmp, fname)
      return true
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false
      throw e
    } finally {
      rmSync(tmp, {force: true})
    }
  }

  /** Reserves `ip` for id/ifname; false when taken. The caller holds the lock. */
  reserve(id: string, ifname: string, ip: string, rangeId: string): boolean {
    const fname = join(this.dir, ip)
    if (this.taken(fname)) return false
    const data = id.trim() + LINE_BREAK + ifname
    if (!this.createComplete(fname, ip, data)) {
      // a garbage file (we hold the lock: nobody is writing it): replace it once
      if (this.taken(fname)) return false
      rmSync(fname, {force: true})
      if (!this.createComplete(fname, ip, data)) return false
    }
    writeFileAtomic(join(this.dir, LAST_IP_PREFIX + rangeId), ip, 0o644)
    return true
  }

  lastReservedIp(rangeId: string): string | undefined {
    let data: string
    try {
      data = readFileSync(join(this.dir, LAST_IP_PREFIX + rangeId), 'utf8')
    } catch {
      return undefined
    }
    try {
      return parseIp(data).ip
    } catch {
      return undefined
    }
  }

  /** All lease files of the store (named by an IP) with their trimmed content. */
  private *files(): Generator<[string, string]> {
    for (const name of this.names()) {
      if (!isIpName(name)) continue
      const p = join(this.dir, name)
      try {
        if (!statSync(p).isFile()) continue
        yield [name, readFileSync(p, 'utf8').trim()]
      } catch {
        // vanished or unreadable: skip like filepath.Walk callers do
      }
    }
  }

  private releaseByKey(match: string): boolean {
    let found = false
    for (const [name, data] of this.files()) {
      if (data === match) {
        try {
          rmSync(join(this.dir, name))
          found = true
        } catch {
          // ignore, like the reference
        }
      }
    }
    return found
  }

  releaseById(id: string, ifname: string): void {
    if (!this.releaseByKey(id.trim() + LINE_BREAK + ifname)) this.releaseByKey(id.trim())
  }

  getById(id: string, ifname: string): string[] {
    const m = id.trim() + LINE_BREAK + ifname
    const out: string[] = []
    for (const [name, data] of this.files()) {
      if (data === m || data === id.trim()) {
        try {
          out.push(parseIp(name).ip)
        } catch {
          // not an address file
        }
      }
    }
    return out
  }

  findById(id: string, ifname: string): boolean {
    const m = id.trim() + LINE_BREAK + ifname
    let any = false
    for (const [, data] of this.files()) {
      if (data === m) return true
      if (data === id.trim()) any = true
    }
    return any
  }

  /** Every lease of the network (for GC and listings). */
  leases(): Lease[] {
    const out: Lease[] = []
    for (const [name, data] of this.files()) {
      let ip: string
      try {
        ip = parseIp(name).ip
      } catch {
        continue
      }
      const owner = parseLeaseContent(data)
      if (!owner) continue // garbage: reclaimed under the lock
      out.push({ip, containerId: owner.containerId, ifname: owner.ifname})
    }
    return out
  }
}

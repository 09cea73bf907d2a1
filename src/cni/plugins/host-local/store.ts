import {closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync} from 'node:fs'
import {join} from 'node:path'
import {withLock} from '../../../lib/flock.js'
import {parseIp} from '../../kernel/addr.js'
import type {IpStore} from './allocator.js'

/**
 * disk.Store of host-local v1.1.1: <dataDir>/<net>/<ip> holding
 * "<id>\r\n<ifname>", last_reserved_ip.<rangeID>, and flock(2) on
 * <dataDir>/<net>/lock (shared with the reference plugin).
 */
export const LINE_BREAK = '\r\n'
const LAST_IP_PREFIX = 'last_reserved_ip.'

export interface Lease {
  ip: string
  containerId: string
  ifname?: string
}

export class DiskStore implements IpStore {
  readonly dir: string

  constructor(dataDir: string, network: string) {
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(network)) throw new Error(`invalid network name ${JSON.stringify(network)}`)
    this.dir = join(dataDir, network)
  }

  /** Runs fn under the store lock (creates the directory 0755 as the reference). */
  async locked<T>(fn: () => T | Promise<T>): Promise<T> {
    mkdirSync(this.dir, {recursive: true, mode: 0o755})
    return withLock(join(this.dir, 'lock'), fn, {mode: 0o750})
  }

  reserve(id: string, ifname: string, ip: string, rangeId: string): boolean {
    const fname = join(this.dir, ip)
    let fd: number
    try {
      fd = openSync(fname, 'wx', 0o644)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false
      throw e
    }
    try {
      writeSync(fd, id.trim() + LINE_BREAK + ifname)
    } catch (e) {
      closeSync(fd)
      rmSync(fname, {force: true})
      throw e
    }
    closeSync(fd)
    writeFileSync(join(this.dir, LAST_IP_PREFIX + rangeId), ip, {mode: 0o644})
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

  /** All regular files of the store with their trimmed content. */
  private *files(): Generator<[string, string]> {
    let names: string[]
    try {
      names = readdirSync(this.dir)
    } catch {
      return
    }
    for (const name of names) {
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
      const [cid, ifname] = data.split(LINE_BREAK)
      out.push({ip, containerId: cid.trim(), ifname: ifname?.trim() || undefined})
    }
    return out
  }
}

import {parseIp} from '../../kernel/ip/addr.js'
import {nextIp, rangeFor, rangeSetContains, rangeSetString, type RangeSet} from './config.js'

/** The persistence the allocator needs (disk store, or a map in tests). */
export interface IpStore {
  reserve(id: string, ifname: string, ip: string, rangeId: string): boolean
  lastReservedIp(rangeId: string): string | undefined
  getById(id: string, ifname: string): string[]
  releaseById(id: string, ifname: string): void
  findById(id: string, ifname: string): boolean
}

export interface Allocation {
  /** CIDR: ip/subnet prefix */
  address: string
  gateway: string
}

/** RangeIter of allocator.go: round robin from the last reserved IP. */
export class RangeIter {
  private rangeIdx = 0
  private cur: string | undefined
  private startIp: string | undefined

  constructor(private readonly set: RangeSet, lastReserved: string | undefined) {
    if (lastReserved !== undefined && rangeSetContains(set, lastReserved)) {
      const i = set.findIndex((r) => rangeFor([r], lastReserved))
      this.rangeIdx = i
      this.cur = parseIp(lastReserved).ip
    } else {
      this.rangeIdx = 0
      this.startIp = set[0].rangeStart
    }
  }

  next(): {ip: string; prefix: number; gateway: string} | undefined {
    // iterative form of the recursive Go Next()
    for (;;) {
      let r = this.set[this.rangeIdx]
      if (this.cur === undefined) {
        this.cur = r.rangeStart
        this.startIp = this.cur
        if (this.cur === r.gateway) continue
        return {ip: this.cur, prefix: r.subnet.prefix, gateway: r.gateway}
      }
      if (this.cur === r.rangeEnd) {
        this.rangeIdx = (this.rangeIdx + 1) % this.set.length
        r = this.set[this.rangeIdx]
        this.cur = r.rangeStart
      } else {
        this.cur = nextIp(this.cur, r.subnet.v6)
      }
      if (this.startIp === undefined) this.startIp = this.cur
      else if (this.cur === this.startIp) return undefined
      if (this.cur === r.gateway) continue
      return {ip: this.cur, prefix: r.subnet.prefix, gateway: r.gateway}
    }
  }
}

/** IPAllocator.Get for one range set (the caller holds the store lock). */
export function allocate(set: RangeSet, rangeId: number, store: IpStore, id: string, ifname: string, requested?: string): Allocation {
  const rid = String(rangeId)
  if (requested !== undefined) {
    const ip = parseIp(requested).ip
    const r = rangeFor(set, ip)
    if (!r) throw new Error(`${ip} not in range set ${rangeSetString(set)}`)
    if (ip === r.gateway) throw new Error(`requested ip ${ip} is subnet's gateway`)
    if (!store.reserve(id, ifname, ip, rid)) {
      throw new Error(`requested IP address ${ip} is not available in range set ${rangeSetString(set)}`)
    }
    return {address: `${ip}/${r.subnet.prefix}`, gateway: r.gateway}
  }
  for (const got of store.getById(id, ifname)) {
    if (rangeSetContains(set, got)) throw new Error(`${got} has been allocated to ${id}, duplicate allocation is not allowed`)
  }
  const iter = new RangeIter(set, store.lastReservedIp(rid))
  for (;;) {
    const n = iter.next()
    if (!n) break
    if (store.reserve(id, ifname, n.ip, rid)) return {address: `${n.ip}/${n.prefix}`, gateway: n.gateway}
  }
  throw new Error(`no IP addresses available in range set: ${rangeSetString(set)}`)
}

/** A map-backed store with the disk store's semantics, for tests and dry runs. */
export class MemoryStore implements IpStore {
  files = new Map<string, string>()
  reserve(id: string, ifname: string, ip: string, rangeId: string): boolean {
    if (this.files.has(ip)) return false
    this.files.set(ip, `${id.trim()}\r\n${ifname}`)
    this.files.set(`last_reserved_ip.${rangeId}`, ip)
    return true
  }
  lastReservedIp(rangeId: string): string | undefined {
    const v = this.files.get(`last_reserved_ip.${rangeId}`)
    try {
      return v === undefined ? undefined : parseIp(v).ip
    } catch {
      return undefined
    }
  }
  getById(id: string, ifname: string): string[] {
    const m = `${id.trim()}\r\n${ifname}`
    const out: string[] = []
    for (const [k, v] of this.files) {
      if (v.trim() === m || v.trim() === id.trim()) {
        try {
          out.push(parseIp(k).ip)
        } catch {
          // not an address file
        }
      }
    }
    return out
  }
  releaseById(id: string, ifname: string): void {
    let found = false
    for (const [k, v] of [...this.files]) if (v.trim() === `${id.trim()}\r\n${ifname}`) {
      this.files.delete(k)
      found = true
    }
    if (!found) for (const [k, v] of [...this.files]) if (v.trim() === id.trim()) this.files.delete(k)
  }
  findById(id: string, ifname: string): boolean {
    const vals = [...this.files.values()].map((v) => v.trim())
    return vals.includes(`${id.trim()}\r\n${ifname}`) || vals.includes(id.trim())
  }
}

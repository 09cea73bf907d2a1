import {Address4, Address6} from 'ip-address'
import {parseIp} from '../../kernel/ip/addr.js'

/**
 * The records of one network's DNS zone (pure, no I/O).
 *
 * A zone is built from the containers attached to the network. Each name of a
 * member is answered as it is and as `<name>.<network>`, case-insensitively
 * (ASCII only, RFC 4343), with TTL 0 (aardvark-dns does the same: addresses
 * change as containers come and go). A name of the zone with no record of the
 * asked type is NODATA (NOERROR, no answers); a name the zone does not hold is
 * forwarded, as aardvark-dns and Docker forward every name outside their own
 * records (see server.ts).
 */

/** One attached container on a network. */
export interface DnsMember {
  names: string[]
  ipv4: string[]
  ipv6: string[]
}

/** A record of the zone, as `network dns` lists it and as answers carry it. */
export interface ZoneRecord {
  name: string
  type: 'A' | 'AAAA' | 'PTR'
  data: string
}

interface NameEntry {
  a: string[]
  aaaa: string[]
}

export interface Zone {
  readonly network: string
  /** lower-case name (no trailing dot) -> addresses */
  readonly names: ReadonlyMap<string, NameEntry>
  /** lower-case reverse name (in-addr.arpa / ip6.arpa, no trailing dot) -> targets */
  readonly ptr: ReadonlyMap<string, string[]>
  /** member names left out because they are not DNS names */
  readonly skipped: readonly string[]
}

export type LookupResult =
  | {kind: 'answer'; records: ZoneRecord[]}
  /** the name is in the zone, with no record of this type */
  | {kind: 'nodata'}
  /** not a name of this zone */
  | {kind: 'forward'}

/** The zone answer's TTL: 0, answers must not be cached. */
export const ZONE_TTL = 0

/** DNS case folding: ASCII letters only (RFC 4343), and no trailing dot. */
export function foldName(name: string): string {
  let n = name.endsWith('.') && name.length > 1 ? name.slice(0, -1) : name
  if (/[A-Z]/.test(n)) n = n.replace(/[A-Z]+/g, (s) => s.toLowerCase())
  return n
}

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/

/**
 * Whether a (folded) name can be a DNS name of the zone: labels of letters,
 * digits, '-' and '_' (1 to 63 characters, no leading or trailing '-'), at
 * most 253 characters in all.
 */
export function isZoneName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && name.split('.').every((l) => LABEL.test(l))
}

/** The reverse-lookup name of an address (in-addr.arpa / ip6.arpa, ip-address's reverseForm), no trailing dot. */
export function reverseName(ip: string): string {
  const p = parseIp(ip, {keepMapped: true})
  const form = p.v6 ? new Address6(p.ip).reverseForm() : new Address4(p.ip).reverseForm()
  return form.endsWith('.') ? form.slice(0, -1) : form
}

function addUnique(list: string[], v: string): void {
  if (!list.includes(v)) list.push(v)
}

/**
 * The zone of `network` from its members. Names that are not DNS names are
 * left out (listed in `skipped`); addresses are canonicalised (an address
 * that does not parse throws: the caller's member list is wrong). Each member
 * address gets one PTR, to the member's first valid name qualified with the
 * network (`web.mynet`, as Docker answers), so that the reverse name says
 * which network it is on.
 */
export function buildZone(network: string, members: readonly DnsMember[]): Zone {
  const net = foldName(network)
  const names = new Map<string, NameEntry>()
  const ptr = new Map<string, string[]>()
  const skipped: string[] = []
  const suffixOk = isZoneName(net)
  for (const m of members) {
    const a = m.ipv4.map((ip) => {
      const p = parseIp(ip, {keepMapped: true})
      if (p.v6) throw new Error(`DNS member address ${ip} is not IPv4`)
      return p.ip
    })
    const aaaa = m.ipv6.map((ip) => {
      const p = parseIp(ip, {keepMapped: true})
      if (!p.v6) throw new Error(`DNS member address ${ip} is not IPv6`)
      return p.ip
    })
    const own: string[] = []
    for (const raw of m.names) {
      const n = foldName(raw)
      if (!isZoneName(n)) {
        skipped.push(raw)
        continue
      }
      addUnique(own, n)
      const qualified = `${n}.${net}`
      if (suffixOk && qualified.length <= 253) addUnique(own, qualified)
    }
    for (const n of own) {
      let e = names.get(n)
      if (!e) names.set(n, (e = {a: [], aaaa: []}))
      for (const ip of a) addUnique(e.a, ip)
      for (const ip of aaaa) addUnique(e.aaaa, ip)
    }
    const first = m.names.map(foldName).find(isZoneName)
    if (first === undefined) continue
    const target = suffixOk && `${first}.${net}`.length <= 253 ? `${first}.${net}` : first
    for (const ip of [...a, ...aaaa]) {
      const r = reverseName(ip)
      let t = ptr.get(r)
      if (!t) ptr.set(r, (t = []))
      addUnique(t, target)
    }
  }
  return {network, names, ptr, skipped}
}

/** An empty zone: every name is forwarded. */
export function emptyZone(network: string): Zone {
  return buildZone(network, [])
}

/**
 * What the zone answers for a question (name as received, any case, with or
 * without the trailing dot; type as dns-packet names it). ANY gets the A and
 * AAAA records of a name.
 */
export function lookup(zone: Zone, qname: string, qtype: string): LookupResult {
  const name = foldName(qname)
  const e = zone.names.get(name)
  if (e) {
    const records: ZoneRecord[] = []
    if (qtype === 'A' || qtype === 'ANY') for (const ip of e.a) records.push({name: qname, type: 'A', data: ip})
    if (qtype === 'AAAA' || qtype === 'ANY') for (const ip of e.aaaa) records.push({name: qname, type: 'AAAA', data: ip})
    return records.length > 0 ? {kind: 'answer', records} : {kind: 'nodata'}
  }
  const t = zone.ptr.get(name)
  if (t) {
    if (qtype !== 'PTR' && qtype !== 'ANY') return {kind: 'nodata'}
    return {kind: 'answer', records: t.map((data) => ({name: qname, type: 'PTR', data}))}
  }
  return {kind: 'forward'}
}

/** Every record the zone serves, sorted (names, then reverse names), for listing. */
export function zoneRecords(zone: Zone): ZoneRecord[] {
  const out: ZoneRecord[] = []
  for (const n of [...zone.names.keys()].sort()) {
    const e = zone.names.get(n)!
    for (const ip of e.a) out.push({name: n, type: 'A', data: ip})
    for (const ip of e.aaaa) out.push({name: n, type: 'AAAA', data: ip})
  }
  for (const r of [...zone.ptr.keys()].sort()) for (const t of zone.ptr.get(r)!) out.push({name: r, type: 'PTR', data: t})
  return out
}

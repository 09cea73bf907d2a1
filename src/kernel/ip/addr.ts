import {Address4, Address6} from 'ip-address'
import type {IpCmd} from './batch.js'
import {assertIfName} from './link.js'
import {showToken} from '../tokens.js'

/** Addresses: parsing/formatting with ip-address, and ip batch builders. */

/** An IP address family. */
export type Family = 4 | 6

/** An address with a prefix length, as written (host bits kept). */
export interface Cidr {
  v6: boolean
  /** canonical address text (Go net.IP.String form) */
  ip: string
  prefix: number
}

export interface ParseOptions {
  /**
   * What ::ffff:a.b.c.d (IPv4-mapped IPv6, dotted) denotes: by default the IPv4
   * address a.b.c.d (as Go's net.ParseIP); with keepMapped, an IPv6 address.
   */
  keepMapped?: boolean
}

export function parseIp(text: string, {keepMapped = false}: ParseOptions = {}): {v6: boolean; ip: string} {
  if (typeof text === 'string' && !text.includes('/')) {
    if (Address4.isValid(text)) return {v6: false, ip: new Address4(text).correctForm()}
    if (Address6.isValid(text)) {
      const a = new Address6(text)
      const v4 = !keepMapped && a.is4() ? a.to4().correctForm() : undefined
      return v4 ? {v6: false, ip: v4} : {v6: true, ip: a.correctForm()}
    }
  }
  throw new Error(`invalid IP address ${showToken(text)}`)
}

export function parseCidr(text: string, opts: ParseOptions = {}): Cidr {
  const m = typeof text === 'string' ? /^([^/]+)\/(\d{1,3})$/.exec(text) : null
  if (!m) throw new Error(`invalid CIDR ${showToken(text)}`)
  const {v6, ip} = parseIp(m[1], opts)
  const prefix = Number(m[2])
  if (prefix > (v6 ? 128 : 32)) throw new Error(`invalid CIDR ${showToken(text)}`)
  return {v6, ip, prefix}
}

export function formatCidr(c: Cidr): string {
  return `${c.ip}/${c.prefix}`
}

export function ipToBig(ip: string, v6: boolean): bigint {
  return v6 ? new Address6(ip).bigInt() : new Address4(ip).bigInt()
}

export function bigToIp(n: bigint, v6: boolean): string {
  return v6 ? Address6.fromBigInt(n).correctForm() : Address4.fromBigInt(n).correctForm()
}

/** The network address of a CIDR (host bits cleared), as a Cidr. */
export function networkOf(c: Cidr): Cidr {
  const a = c.v6 ? new Address6(`${c.ip}/${c.prefix}`) : new Address4(`${c.ip}/${c.prefix}`)
  return {v6: c.v6, ip: a.startAddress().correctForm(), prefix: c.prefix}
}

export function lastOf(c: Cidr): string {
  const a = c.v6 ? new Address6(`${c.ip}/${c.prefix}`) : new Address4(`${c.ip}/${c.prefix}`)
  return a.endAddress().correctForm()
}

export function cidrContains(net: Cidr, ip: string): boolean {
  let p: {v6: boolean; ip: string}
  try {
    p = parseIp(ip)
  } catch {
    return false
  }
  if (p.v6 !== net.v6) return false
  const bits = net.v6 ? 128 : 32
  const shift = BigInt(bits - net.prefix)
  return ipToBig(p.ip, p.v6) >> shift === ipToBig(net.ip, net.v6) >> shift
}

/** First and last address of a CIDR's network, as BigInts. */
export function ipRange(c: Cidr): {start: bigint; end: bigint} {
  return {start: ipToBig(networkOf(c).ip, c.v6), end: ipToBig(lastOf(c), c.v6)}
}

export function familyOfCidr(c: Cidr): Family {
  return c.v6 ? 6 : 4
}

/** The address family of an IP or CIDR string (6 for anything that is not IPv4). */
export function familyOf(addr: string): Family {
  return Address4.isValid(addr) ? 4 : 6
}

/**
 * The canonical text of an address (no prefix), as iptables prints it;
 * anything that is not an address (a host name) comes back unchanged.
 * Unlike parseIp, ::ffff:a.b.c.d stays IPv6.
 */
export function canonicalIp(addr: string): string {
  if (Address4.isValid(addr)) return new Address4(addr).correctForm()
  if (Address6.isValid(addr)) return new Address6(addr).correctForm()
  return addr
}

export function isIpv6(ip: string): boolean {
  return parseIp(ip).v6
}

// ---- ip batch command builders (ip infers the family from the address;
// batch lines take no -4/-6 options) ----

export function cmdAddrAdd(dev: string, cidr: string): IpCmd {
  const c = parseCidr(cidr)
  return ['addr', 'add', formatCidr(c), 'dev', assertIfName(dev)]
}

export function cmdAddrDel(dev: string, cidr: string): IpCmd {
  const c = parseCidr(cidr)
  return ['addr', 'del', formatCidr(c), 'dev', assertIfName(dev)]
}

export function cmdAddrShow(dev: string): IpCmd {
  return ['addr', 'show', 'dev', assertIfName(dev)]
}

/** One entry of `ip -j addr show`. */
export interface IpAddrLink {
  ifname: string
  ifindex: number
  address?: string
  flags?: string[]
  operstate?: string
  mtu?: number
  addr_info: Array<{family: 'inet' | 'inet6'; local: string; prefixlen: number; scope: string; tentative?: boolean; dadfailed?: boolean; [k: string]: unknown}>
  [k: string]: unknown
}

/** Global-unicast addresses of a parsed `ip -j addr show` entry as CIDRs. */
export function globalCidrs(link: IpAddrLink): string[] {
  return (link.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => `${parseIp(a.local).ip}/${a.prefixlen}`)
}

/**
 * The index-th subnet of prefix length `size` inside `net` (index from 0), as
 * a Cidr; undefined when index is past the last one. With sliceCount, this
 * enumerates a network's equal slices (an overlay's per-host subnets).
 */
export function subnetAt(net: Cidr, size: number, index: bigint): Cidr | undefined {
  const bits = net.v6 ? 128 : 32
  if (size < net.prefix || size > bits || index < 0n || index >= sliceCount(net, size)) return undefined
  const base = ipToBig(networkOf(net).ip, net.v6)
  return {v6: net.v6, ip: bigToIp(base + (index << BigInt(bits - size)), net.v6), prefix: size}
}

/** How many subnets of prefix length `size` fit in `net` (0 when size is shorter than net's prefix). */
export function sliceCount(net: Cidr, size: number): bigint {
  if (size < net.prefix) return 0n
  return 1n << BigInt(size - net.prefix)
}

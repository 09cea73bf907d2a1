import {Address4, Address6} from 'ip-address'
import {CNI_ERR, CniError, type Protocol} from './types.js'
import {FIREWALL_BACKENDS, iptablesChainFault as chainFault, isFirewallBackendName, type FirewallBackendName} from '../kernel/netfilter/backends/index.js'
import {sysctlKeyFromDotted} from '../kernel/sysctl.js'
import {assertSysctlValue, ifNameProblem, showToken, tokenFault, valueFault} from '../kernel/tokens.js'
import {NETWORK_NAME_RULE} from '../sys/names.js'

/**
 * The typed values of untrusted input, each parsed or refused with one line
 * that names the field a user can fix:
 *
 *   invalid portMappings[0].protocol : must be tcp, udp or sctp, not "tcp\n--flush"
 *
 * One home for the scalars (addresses, prefixes, ports, names, sysctls...):
 * libcni/validate.ts parses a request's names, CNI_ARGS, capability args and
 * labels with them, and each embedded plugin's `parse` the fields of its
 * conflist entry. The batch writers in kernel/ check every token again
 * (defence in depth).
 */

export class InvalidField extends CniError {
  constructor(
    public readonly field: string,
    why: string,
    code: number = CNI_ERR.INVALID_NETCONF,
  ) {
    super(code, `invalid ${field}`, why)
    this.name = 'InvalidField'
  }
}

export const refuse = (field: string, why: string, code?: number): never => {
  throw new InvalidField(field, why, code)
}

/** "must be X, not <value>" with the value shown one-line and cut. */
export const notA = (what: string, v: unknown): string => `must be ${what}, not ${v === undefined ? 'missing' : showToken(typeof v === 'object' ? JSON.stringify(v) : v)}`

// ---- scalar types -------------------------------------------------------


export function protocol(v: unknown, field: string): Protocol {
  const p = typeof v === 'string' ? v.toLowerCase() : v
  if (p !== 'tcp' && p !== 'udp' && p !== 'sctp') return refuse(field, notA('tcp, udp or sctp', v))
  return p
}

/** A port: an integer 1..65535 (a JSON number; text is not a port). */
export function port(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) return refuse(field, notA('an integer from 1 to 65535', v))
  return v
}

/** A port given as decimal text (CLI flags, labels). */
export function portText(v: string, field: string): number {
  if (!/^[1-9][0-9]{0,4}$/.test(v) || Number(v) > 65535) return refuse(field, notA('a port number from 1 to 65535', v))
  return Number(v)
}

/** An ordered port range "a-b" or one port, as text. */
export function portRangeText(v: string, field: string): [number, number] {
  const m = /^([0-9]+)(?:-([0-9]+))?$/.exec(v)
  if (!m) return refuse(field, notA('a port or an ordered range a-b', v))
  const a = portText(m[1]!, field)
  const b = m[2] === undefined ? a : portText(m[2], field)
  if (b < a) return refuse(field, `range ${a}-${b} is not ordered`)
  return [a, b]
}

/** An address without prefix, in canonical form (ip-address's correctForm). */
export function ipAddress(v: unknown, field: string): string {
  if (typeof v !== 'string' || tokenFault(v, /^[0-9A-Fa-f.:]+$/, 45)) return refuse(field, notA('an IPv4 or IPv6 address', v))
  if (Address4.isValid(v) && /^\d{1,3}(\.\d{1,3}){3}$/.test(v)) return new Address4(v).correctForm()
  if (v.includes(':') && Address6.isValid(v)) return new Address6(v).correctForm()
  return refuse(field, notA('an IPv4 or IPv6 address', v))
}

/** addr/prefix in canonical form; the address part is kept (not masked). */
export function cidr(v: unknown, field: string): string {
  if (typeof v !== 'string') return refuse(field, notA('an address/prefix', v))
  const i = v.indexOf('/')
  if (i < 0 || !/^\d{1,3}$/.test(v.slice(i + 1))) return refuse(field, notA('an address/prefix', v))
  let ip: string
  try {
    ip = ipAddress(v.slice(0, i), field)
  } catch {
    return refuse(field, notA('an address/prefix', v))
  }
  const prefix = Number(v.slice(i + 1))
  if (prefix > (ip.includes(':') ? 128 : 32)) return refuse(field, notA('an address/prefix', v))
  return `${ip}/${prefix}`
}

/** An address with or without a prefix (CNI `ips`, CNI_ARGS IP). */
export function ipOrCidr(v: unknown, field: string): string {
  return typeof v === 'string' && v.includes('/') ? cidr(v, field) : ipAddress(v, field)
}

const MAC_RE = /^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$/

/** A MAC: 6 octets, written back lower-case with ':'. */
export function mac(v: unknown, field: string): string {
  if (typeof v !== 'string' || !MAC_RE.test(v)) return refuse(field, notA('a MAC address of 6 octets (aa:bb:cc:dd:ee:ff)', v))
  return v.toLowerCase().replace(/-/g, ':')
}

/** A non-negative integer (rates, bursts). */
export function nonNegativeInt(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return refuse(field, notA('a non-negative integer', v))
  return v
}

export function intIn(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) return refuse(field, notA(`an integer from ${min} to ${max}`, v))
  return v
}

export function bool(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') return refuse(field, notA('true or false', v))
  return v
}

/** A firewall backend's name (bridge `ipMasqBackend`, portmap `backend`): iptables or nftables. */
export function firewallBackendName(v: unknown, field: string): FirewallBackendName {
  if (!isFirewallBackendName(v)) return refuse(field, notA(FIREWALL_BACKENDS.join(' or '), v))
  return v
}

/** Interface names: the one rule set (kernel/tokens.ts) of every writer. */
export function ifName(v: unknown, field: string, code?: number): string {
  const why = ifNameProblem(v)
  if (why) return refuse(field, why, code)
  return v as string
}

/** iptables chain names: the iptables writer's own rule (the iptables backend's chainFault, kernel/netfilter/iptables/rules.ts). */
export function chainName(v: unknown, field: string): string {
  const f = chainFault(v)
  if (f) return refuse(field, `${showToken(v)} is not an iptables chain name: it ${f}`)
  return v as string
}

/** One iptables argument of a conflist's raw condition list (portmap conditionsV4/V6). */
export function iptablesArg(v: unknown, field: string): string {
  const f = tokenFault(v, /^[A-Za-z0-9_.,:/!+=@%-]+$/)
  if (f) return refuse(field, `${showToken(v)} is not one iptables argument: it ${f}`)
  return v as string
}

/** An absolute path without '..', of plain characters (data dirs). */
export function absPath(v: unknown, field: string): string {
  const f = tokenFault(v, /^\/[A-Za-z0-9_.+@/-]*$/, 1024)
  if (f || (v as string).split('/').includes('..')) return refuse(field, notA('an absolute path without ".."', v))
  return v as string
}

/** A DNS name (search domains, aliases): LDH labels and '_', at most 253 characters. */
export function dnsName(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length > 253 || !/^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$/.test(v)) {
    return refuse(field, notA('a DNS name', v))
  }
  return v
}

/** A dotted sysctl key under net. (tuning): no '..', strict characters; IFNAME is the placeholder. */
export function sysctlKey(v: unknown, field: string): string {
  try {
    sysctlKeyFromDotted(v as string)
  } catch (e) {
    return refuse(field, (e as Error).message.replace(/^sysctl: /, ''))
  }
  return v as string
}

export function sysctlValue(key: string, v: unknown, field: string): string {
  if (typeof v !== 'string') return refuse(field, notA('a string', v))
  try {
    assertSysctlValue(key.replace(/\./g, '/'), v)
  } catch (e) {
    return refuse(field, (e as Error).message.replace(/^sysctl: /, ''))
  }
  return v
}

export function obj(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return refuse(field, notA('an object', v))
  return v as Record<string, unknown>
}

export function list(v: unknown, field: string): unknown[] {
  if (!Array.isArray(v)) return refuse(field, notA('a list', v))
  return v
}

export const given = (v: unknown): boolean => v !== undefined && v !== null

export function networkName(v: unknown, field = 'name'): string {
  const f = valueFault(v, new RegExp(NETWORK_NAME_RULE), 128)
  if (f) return refuse(field, `${showToken(v)} is not a network name: it ${f}`)
  return v as string
}

/** A DNS block (capability arg `dns`, static IPAM's `dns`). */
export function dns(v: unknown, field: string): Record<string, unknown> {
  const d = obj(v, field)
  const out: Record<string, unknown> = {}
  if (given(d.nameservers)) out.nameservers = list(d.nameservers, `${field}.nameservers`).map((s, i) => ipAddress(s, `${field}.nameservers[${i}]`))
  if (given(d.search)) out.search = list(d.search, `${field}.search`).map((s, i) => dnsName(s, `${field}.search[${i}]`))
  if (given(d.domain) && d.domain !== '') out.domain = dnsName(d.domain, `${field}.domain`)
  if (given(d.options)) {
    out.options = list(d.options, `${field}.options`).map((s, i) => {
      const f = tokenFault(s, /^[A-Za-z0-9_.:-]+$/, 64)
      return f ? refuse(`${field}.options[${i}]`, `${showToken(s)} is not a resolver option: it ${f}`) : s
    })
  }
  return out
}

/** One range of a range set (host-local `ranges`, capability arg `ipRanges`). */
export function range(v: unknown, field: string): Record<string, string> {
  const r = obj(v, field)
  const out: Record<string, string> = {subnet: cidr(r.subnet, `${field}.subnet`)}
  for (const k of ['rangeStart', 'rangeEnd', 'gateway'] as const) {
    if (given(r[k]) && r[k] !== '') out[k] = ipOrCidr(r[k], `${field}.${k}`).split('/')[0]!
  }
  return out
}

/** A route list (IPAM `routes`). */
export function routes(v: unknown, field: string): void {
  list(v, field).forEach((r, i) => {
    const o = obj(r, `${field}[${i}]`)
    cidr(o.dst, `${field}[${i}].dst`)
    if (given(o.gw) && o.gw !== '') ipAddress(o.gw, `${field}[${i}].gw`)
  })
}

import {CniError, CNI_ERR, type CniRoute, type ParseContext, type PluginNetConf} from '../types.js'
import {isNetworkName} from '../../sys/names.js'
import {bigToIp, cidrContains, ipToBig, lastOf, networkOf, parseCidr, parseIp, type Cidr} from '../../kernel/ip/addr.js'
import {loadArgs} from '../cniargs.js'
import * as f from '../fields.js'

/** host-local configuration, canonicalized as allocator.LoadIPAMConfig (v1.1.1). */

export interface Range {
  subnet: Cidr // network form
  rangeStart: string
  rangeEnd: string
  gateway: string
}
export type RangeSet = Range[]

export interface HostLocalConf {
  name: string
  cniVersion: string
  dataDir: string
  resolvConf?: string
  routes: CniRoute[]
  ranges: RangeSet[]
  /** requested IPs, canonical text */
  requested: string[]
}

export const DEFAULT_DATA_DIR = '/var/lib/cni/networks'

function bad(msg: string): CniError {
  return new CniError(CNI_ERR.INTERNAL, msg) // the reference returns plain errors: skel makes them 999
}

/** ip.IP of the reference: "a.b.c.d" or "a.b.c.d/nn" (keeps the address). */
function parseLooseIp(v: unknown): string {
  if (typeof v !== 'string') throw bad(`invalid IP ${JSON.stringify(v)}`)
  const s = v.includes('/') ? v.slice(0, v.indexOf('/')) : v
  try {
    return parseIp(s).ip
  } catch {
    throw bad(`invalid IP ${JSON.stringify(v)}`)
  }
}

export function rangeContains(r: Range, ip: string): boolean {
  if (!cidrContains(r.subnet, ip)) return false
  const v6 = r.subnet.v6
  const n = ipToBig(parseIp(ip).ip, v6)
  return n >= ipToBig(r.rangeStart, v6) && n <= ipToBig(r.rangeEnd, v6)
}

export function rangeSetContains(s: RangeSet, ip: string): boolean {
  return rangeFor(s, ip) !== undefined
}

export function rangeFor(s: RangeSet, ip: string): Range | undefined {
  return s.find((r) => rangeContains(r, ip))
}

export function rangeSetString(s: RangeSet): string {
  return s.map((r) => `${r.rangeStart}-${r.rangeEnd}`).join(',')
}

export function nextIp(ip: string, v6: boolean): string {
  return bigToIp(ipToBig(ip, v6) + 1n, v6)
}

/** Range.Canonicalize */
export function canonicalizeRange(raw: Record<string, unknown>): Range {
  if (typeof raw.subnet !== 'string') throw bad('invalid range: missing subnet')
  let c: Cidr
  try {
    c = parseCidr(raw.subnet)
  } catch {
    throw bad(`invalid CIDR address: ${raw.subnet}`)
  }
  const subnet = networkOf(c)
  const bits = subnet.v6 ? 128 : 32
  if (subnet.prefix > bits - 2) throw bad(`Network ${subnet.ip}/${subnet.prefix} too small to allocate from`)
  const famCheck = (ip: string, what: string) => {
    if (parseIp(ip).v6 !== subnet.v6) throw bad(`${what} ${ip} not in network ${subnet.ip}/${subnet.prefix}`)
  }
  const gateway = raw.gateway !== undefined && raw.gateway !== '' ? parseLooseIp(raw.gateway) : nextIp(subnet.ip, subnet.v6)
  const r: Range = {subnet, gateway, rangeStart: '', rangeEnd: ''}
  if (raw.rangeStart !== undefined && raw.rangeStart !== '') {
    const s = parseLooseIp(raw.rangeStart)
    famCheck(s, 'RangeStart')
    if (!cidrContains(subnet, s)) throw bad(`RangeStart ${s} not in network ${subnet.ip}/${subnet.prefix}`)
    r.rangeStart = s
  } else r.rangeStart = nextIp(subnet.ip, subnet.v6)
  if (raw.rangeEnd !== undefined && raw.rangeEnd !== '') {
    const e = parseLooseIp(raw.rangeEnd)
    famCheck(e, 'RangeEnd')
    if (!cidrContains(subnet, e)) throw bad(`RangeEnd ${e} not in network ${subnet.ip}/${subnet.prefix}`)
    r.rangeEnd = e
  } else {
    const last = lastOf(subnet)
    r.rangeEnd = subnet.v6 ? last : bigToIp(ipToBig(last, false) - 1n, false)
  }
  return r
}

function rangeOverlaps(a: Range, b: Range): boolean {
  if (a.subnet.v6 !== b.subnet.v6) return false
  return rangeContains(a, b.rangeStart) || rangeContains(a, b.rangeEnd) || rangeContains(b, a.rangeStart) || rangeContains(b, a.rangeEnd)
}

function setOverlaps(a: RangeSet, b: RangeSet): boolean {
  return a.some((r) => b.some((r1) => rangeOverlaps(r, r1)))
}

export function canonicalizeRangeSet(raw: unknown): RangeSet {
  if (!Array.isArray(raw) || raw.length === 0) throw bad('empty range set')
  const set = raw.map((r) => canonicalizeRange((r ?? {}) as Record<string, unknown>))
  for (const r of set) if (r.subnet.v6 !== set[0].subnet.v6) throw bad('mixed address families')
  for (let i = 0; i < set.length - 1; i++) {
    for (const r2 of set.slice(i + 1)) {
      if (rangeOverlaps(set[i], r2)) throw bad(`subnets ${set[i].rangeStart}-${set[i].rangeEnd} and ${r2.rangeStart}-${r2.rangeEnd} overlap`)
    }
  }
  return set
}

function normalizeRoute(r: unknown): CniRoute {
  const o = (r ?? {}) as Record<string, unknown>
  if (typeof o.dst !== 'string') throw bad(`invalid route ${JSON.stringify(r)}`)
  let dst: Cidr
  try {
    dst = networkOf(parseCidr(o.dst))
  } catch {
    throw bad(`invalid route dst ${JSON.stringify(o.dst)}`)
  }
  const out: CniRoute = {dst: `${dst.ip}/${dst.prefix}`}
  if (o.gw !== undefined && o.gw !== null && o.gw !== '') out.gw = parseLooseIp(o.gw)
  for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) if (typeof o[k] === 'number') out[k] = o[k] as number
  return out
}

/** LoadIPAMConfig: the full net conf (with ipam) plus CNI_ARGS pairs. */
export function loadHostLocalConf(conf: PluginNetConf, args: Array<[string, string]>): HostLocalConf {
  const ipam = conf.ipam as Record<string, unknown> | undefined
  if (!ipam) throw bad("IPAM config missing 'ipam' key")
  const requested: string[] = []
  const env = loadArgs(args, ['IP'])
  if (env.IP) requested.push(parseLooseIp(env.IP))
  const cniArgs = (conf.args as {cni?: {ips?: unknown}} | undefined)?.cni
  if (cniArgs && Array.isArray(cniArgs.ips)) for (const i of cniArgs.ips) requested.push(parseLooseIp(i))
  const rc = (conf.runtimeConfig ?? {}) as {ips?: unknown; ipRanges?: unknown}
  if (Array.isArray(rc.ips)) for (const i of rc.ips) requested.push(parseLooseIp(i))

  let rawSets: unknown[] = Array.isArray(ipam.ranges) ? [...(ipam.ranges as unknown[])] : []
  if (typeof ipam.subnet === 'string' && ipam.subnet !== '') {
    rawSets = [[{subnet: ipam.subnet, rangeStart: ipam.rangeStart, rangeEnd: ipam.rangeEnd, gateway: ipam.gateway}], ...rawSets]
  }
  if (Array.isArray(rc.ipRanges) && rc.ipRanges.length > 0) rawSets = [...rc.ipRanges, ...rawSets]
  if (rawSets.length === 0) throw bad('no IP ranges specified')
  const ranges = rawSets.map((s, i) => {
    try {
      return canonicalizeRangeSet(s)
    } catch (e) {
      throw bad(`invalid range set ${i}: ${(e as Error).message}`)
    }
  })
  for (let i = 0; i < ranges.length - 1; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      if (setOverlaps(ranges[i], ranges[j])) throw bad(`range set ${i} overlaps with ${j}`)
    }
  }
  const routes = Array.isArray(ipam.routes) ? ipam.routes.map(normalizeRoute) : []
  const dataDir = typeof ipam.dataDir === 'string' && ipam.dataDir !== '' ? ipam.dataDir : DEFAULT_DATA_DIR
  // the reference takes a relative dataDir relative to its cwd; we refuse it
  if (!dataDir.startsWith('/') || dataDir.split('/').includes('..')) throw bad(`invalid dataDir ${JSON.stringify(dataDir)}: must be an absolute path without ".."`)
  const name = conf.name
  if (!isNetworkName(name)) throw bad(`invalid network name ${JSON.stringify(name)}`)
  return {
    name,
    cniVersion: conf.cniVersion,
    dataDir,
    resolvConf: typeof ipam.resolvConf === 'string' && ipam.resolvConf !== '' ? ipam.resolvConf : undefined,
    routes,
    ranges,
    requested,
  }
}

/**
 * The checks of an ADD that need no store: every requested IP must fall in
 * some range set (else the reference fails with "failed to allocate all
 * requested IPs" after opening the store).
 */
export function precheckAdd(conf: HostLocalConf): void {
  const left = conf.requested.filter((ip) => !conf.ranges.some((s) => rangeSetContains(s, ip)))
  if (left.length) throw new CniError(CNI_ERR.INTERNAL, `failed to allocate all requested IPs: ${left.join(' ')}`)
}

/** The `ipam` fields host-local reads that reach the disk or the kernel, refused by name (`plugins[0].ipam.subnet`). */
function checkFields(c: PluginNetConf, at: string): void {
  if (!f.given(c.ipam)) return
  const field = `${at}.ipam`
  const i = f.obj(c.ipam, field)
  if (f.given(i.subnet) && i.subnet !== '') f.cidr(i.subnet, `${field}.subnet`)
  for (const k of ['rangeStart', 'rangeEnd', 'gateway']) if (f.given(i[k]) && i[k] !== '') f.ipOrCidr(i[k], `${field}.${k}`)
  if (f.given(i.ranges)) f.list(i.ranges, `${field}.ranges`).forEach((set, a) => f.list(set, `${field}.ranges[${a}]`).forEach((r, b) => f.range(r, `${field}.ranges[${a}][${b}]`)))
  if (f.given(i.dataDir) && i.dataDir !== '') f.absPath(i.dataDir, `${field}.dataDir`)
  if (f.given(i.resolvConf) && i.resolvConf !== '') f.absPath(i.resolvConf, `${field}.resolvConf`)
  if (f.given(i.routes)) f.routes(i.routes, `${field}.routes`)
}

/**
 * host-local's `parse`, on its main plugin's netconf: the ipam fields by
 * name, then LoadIPAMConfig (GC ignores CNI_ARGS); an ADD also checks that
 * every requested IP falls in a range, before the store is opened.
 */
export function parseHostLocal(c: PluginNetConf, at: string, ctx: ParseContext): HostLocalConf {
  checkFields(c, at)
  const conf = loadHostLocalConf(c, ctx.command === 'GC' ? [['IgnoreUnknown', '1']] : ctx.args)
  if (ctx.command === 'ADD') precheckAdd(conf)
  return conf
}

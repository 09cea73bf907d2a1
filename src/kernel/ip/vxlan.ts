import {run} from '../../sys/exec.js'
import {type IpAddrLink, cmdAddrShow, formatCidr, parseCidr, parseIp} from './addr.js'
import {type IpCmd, ipBatch, parseJsonLines} from './batch.js'
import {assertIfName, cmdLinkShow, normalizeMac} from './link.js'

/**
 * VXLAN devices and their peers, as flannel's vxlan backend sets them up
 * (pkg/backend/vxlan, "directRouting off"): one device without learning,
 * and for each peer a neighbour entry (its VTEP address -> its VTEP MAC), an
 * FDB entry (that MAC -> its underlay address) and an on-link route to its
 * subnet via its VTEP address. Builders return typed ip/bridge batch commands;
 * the readers parse `ip -j` / `bridge -j` output of the current namespace.
 */

export interface VxlanSpec {
  name: string
  vni: number
  /** underlay address the tunnel is sourced from */
  local: string
  /** underlay interface */
  dev: string
  port: number
  mtu: number
  /** the device's MAC (its VTEP MAC) */
  mac?: string
}

function uint(v: number, what: string, max: number): string {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new Error(`invalid ${what} ${v} : not an integer 0..${max}`)
  return String(v)
}

export function cmdVxlanAdd(s: VxlanSpec): IpCmd {
  return [
    'link', 'add', 'name', assertIfName(s.name, 'vxlan device name'),
    'mtu', uint(s.mtu, 'mtu', 65535),
    ...(s.mac ? ['address', normalizeMac(s.mac)] : []),
    'type', 'vxlan', 'id', uint(s.vni, 'vni', 16777215),
    'local', parseIp(s.local).ip,
    'dev', assertIfName(s.dev, 'underlay interface'),
    'dstport', uint(s.port, 'port', 65535),
    'nolearning',
  ]
}

/** The VTEP address (a /32 or /128) on the device; `replace` so a second run is a no-op. */
export function cmdAddrReplace(dev: string, cidr: string): IpCmd {
  return ['addr', 'replace', formatCidr(parseCidr(cidr)), 'dev', assertIfName(dev)]
}

export function cmdNeighReplace(dev: string, ip: string, mac: string): IpCmd {
  return ['neigh', 'replace', parseIp(ip).ip, 'lladdr', normalizeMac(mac), 'dev', assertIfName(dev), 'nud', 'permanent']
}

export function cmdNeighDel(dev: string, ip: string): IpCmd {
  return ['neigh', 'del', parseIp(ip).ip, 'dev', assertIfName(dev)]
}

/** `route replace <dst> via <gw> dev <dev> onlink`: flannel's vxlanRoute (RTNH_F_ONLINK). */
export function cmdRouteReplaceOnlink(dst: string, gw: string, dev: string): IpCmd {
  return ['route', 'replace', formatCidr(parseCidr(dst)), 'via', parseIp(gw).ip, 'dev', assertIfName(dev), 'onlink']
}

export function cmdRouteDel(dst: string, dev: string): IpCmd {
  return ['route', 'del', formatCidr(parseCidr(dst)), 'dev', assertIfName(dev)]
}

/** A `bridge -batch` line: the peer's VTEP MAC is reached at its underlay address. */
export function cmdFdbReplace(dev: string, mac: string, dst: string): IpCmd {
  return ['fdb', 'replace', normalizeMac(mac), 'dev', assertIfName(dev), 'dst', parseIp(dst).ip, 'self', 'permanent']
}

export function cmdFdbDel(dev: string, mac: string, dst: string): IpCmd {
  return ['fdb', 'del', normalizeMac(mac), 'dev', assertIfName(dev), 'dst', parseIp(dst).ip, 'self']
}

/** What `ip -d link show` says of an existing VXLAN device. */
export interface VxlanState {
  mac: string
  mtu: number
  up: boolean
  vni?: number
  local?: string
  port?: number
  learning?: boolean
  /** ifindex of the underlay device */
  linkIndex?: number
}

/** The VXLAN device `name` of this namespace; undefined when absent; throws when it is not a VXLAN device. */
export async function readVxlan(name: string): Promise<VxlanState | undefined> {
  const res = await ipBatch([cmdLinkShow(name)], {json: true, details: true, allowFailure: true})
  if (res.code !== 0) {
    if (/does not exist|cannot find device/i.test(res.stderr)) return undefined
    throw new Error(`ip link show ${name}: ${res.stderr.trim()}`)
  }
  return vxlanState(name, (parseJsonLines(res.stdout)[0] as Array<Record<string, unknown>> | undefined)?.[0])
}

function vxlanState(name: string, link: Record<string, unknown> | undefined): VxlanState | undefined {
  if (!link) return undefined
  const info = link.linkinfo as {info_kind?: string; info_data?: Record<string, unknown>} | undefined
  if (info?.info_kind !== 'vxlan') throw new Error(`${name} exists and is not a vxlan device (${info?.info_kind ?? 'no kind'})`)
  const d = info.info_data ?? {}
  return {
    mac: String(link.address ?? ''),
    mtu: Number(link.mtu ?? 0),
    up: Array.isArray(link.flags) && (link.flags as string[]).includes('UP'),
    vni: typeof d.id === 'number' ? d.id : undefined,
    local: typeof d.local === 'string' ? d.local : undefined,
    port: typeof d.port === 'number' ? d.port : undefined,
    learning: typeof d.learning === 'boolean' ? d.learning : undefined,
    linkIndex: typeof d.link === 'number' ? d.link : undefined,
  }
}

/** The peers' entries a device holds: on-link routes, permanent neighbours, FDB entries with a destination. */
export interface PeerEntries {
  /** the device's own IPv4 addresses (CIDR) */
  addrs: string[]
  routes: Array<{dst: string; gw: string}>
  neighs: Array<{ip: string; mac: string}>
  fdb: Array<{mac: string; dst: string}>
}

export async function readPeerEntries(dev: string): Promise<PeerEntries> {
  assertIfName(dev)
  const res = await ipBatch([['route', 'show', 'dev', dev], ['neigh', 'show', 'dev', dev], cmdAddrShow(dev)], {json: true})
  const [routes, neighs, links] = parseJsonLines(res.stdout) as [Array<{dst?: string; gateway?: string}>?, Array<{dst?: string; lladdr?: string; state?: string[]}>?, IpAddrLink[]?]
  const fdbRes = await run('bridge', ['-j', 'fdb', 'show', 'dev', dev])
  const fdb = (fdbRes.stdout.trim() ? JSON.parse(fdbRes.stdout) : []) as Array<{mac?: string; dst?: string}>
  return {
    addrs: (links?.[0]?.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
    routes: (routes ?? []).filter((r) => r.dst && r.gateway && r.dst.includes('/')).map((r) => ({dst: r.dst!, gw: r.gateway!})),
    neighs: (neighs ?? []).filter((n) => n.dst && n.lladdr && (n.state ?? []).includes('PERMANENT')).map((n) => ({ip: n.dst!, mac: n.lladdr!})),
    fdb: fdb.filter((f) => f.mac && f.dst && f.mac !== '00:00:00:00:00:00').map((f) => ({mac: f.mac!, dst: f.dst!})),
  }
}

/** The underlay: an interface with its first global IPv4 address and its MTU. */
export interface Underlay {
  dev: string
  ip: string
  mtu: number
}

/**
 * Finds the underlay from an interface name, an address, or (neither) the
 * interface of the IPv4 default route, in the current namespace.
 */
export async function findUnderlay(spec: {dev?: string; ip?: string}): Promise<Underlay> {
  const res = await ipBatch([['addr', 'show'], ['route', 'show', 'default']], {json: true})
  const [links = [], defaults = []] = parseJsonLines(res.stdout) as [IpAddrLink[]?, Array<{dev?: string}>?]
  return pickUnderlay(spec, links, defaults)
}

function pickUnderlay(spec: {dev?: string; ip?: string}, links: IpAddrLink[], routes: Array<{dst?: string; dev?: string}>): Underlay {
  const defaults = routes.filter((r) => r.dst === 'default')
  const v4 = (l: IpAddrLink) => (l.addr_info ?? []).filter((a) => a.family === 'inet' && a.scope === 'global')
  if (spec.ip !== undefined) {
    const want = parseIp(spec.ip).ip
    const l = links.find((x) => v4(x).some((a) => a.local === want))
    if (!l) throw new Error(`no interface has the underlay address ${want}`)
    return {dev: l.ifname, ip: want, mtu: l.mtu ?? 1500}
  }
  let dev = spec.dev
  if (dev === undefined) {
    dev = defaults.find((r) => r.dev)?.dev
    if (!dev) throw new Error('no IPv4 default route to take the underlay interface from (give -o underlay=IF|ADDR)')
  }
  const l = links.find((x) => x.ifname === dev)
  if (!l) throw new Error(`underlay interface ${dev} does not exist`)
  const a = v4(l)[0]
  if (!a) throw new Error(`underlay interface ${dev} has no global IPv4 address`)
  return {dev: l.ifname, ip: a.local, mtu: l.mtu ?? 1500}
}

/** What an overlay ADD needs to know of this namespace, read by one `ip -d -batch`. */
export interface OverlayView {
  underlay: Underlay
  /** the VXLAN device, when it exists */
  dev?: VxlanState
  /** its entries (no FDB: read with readFdb) */
  entries: Omit<PeerEntries, 'fdb'>
}

/**
 * One `ip -j -d -batch` for the underlay (interfaces, default route), the
 * VXLAN device `name` with its addresses, and its routes and neighbours.
 */
export async function observeOverlay(name: string, spec: {dev?: string; ip?: string}): Promise<OverlayView> {
  assertIfName(name)
  const res = await ipBatch([['addr', 'show'], ['route', 'show'], ['neigh', 'show']], {json: true, details: true})
  const [links = [], routes = [], neighs = []] = parseJsonLines(res.stdout) as [IpAddrLink[]?, Array<{dst?: string; gateway?: string; dev?: string}>?, Array<{dst?: string; dev?: string; lladdr?: string; state?: string[]}>?]
  const link = links.find((l) => l.ifname === name)
  const dev = link ? vxlanState(name, link as unknown as Record<string, unknown>) : undefined
  return {
    underlay: pickUnderlay(spec, links, routes),
    dev,
    entries: {
      addrs: (link?.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
      routes: routes.filter((r) => r.dev === name && r.dst && r.gateway && r.dst.includes('/')).map((r) => ({dst: r.dst!, gw: r.gateway!})),
      neighs: neighs.filter((n) => n.dev === name && n.dst && n.lladdr && (n.state ?? []).includes('PERMANENT')).map((n) => ({ip: n.dst!, mac: n.lladdr!})),
    },
  }
}

/** The FDB entries with a destination of a VXLAN device. */
export async function readFdb(dev: string): Promise<PeerEntries['fdb']> {
  const res = await run('bridge', ['-j', 'fdb', 'show', 'dev', assertIfName(dev)])
  const fdb = (res.stdout.trim() ? JSON.parse(res.stdout) : []) as Array<{mac?: string; dst?: string}>
  return fdb.filter((f) => f.mac && f.dst && f.mac !== '00:00:00:00:00:00').map((f) => ({mac: f.mac!, dst: f.dst!}))
}

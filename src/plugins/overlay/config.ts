import {isNetworkName} from '../../sys/names.js'
import {type Cidr, formatCidr, networkOf, parseCidr, parseIp} from '../../kernel/ip/addr.js'
import {assertIfName, validIfName} from '../../kernel/ip/link.js'
import {type EtcdTls, parseEndpoints, tlsProblem} from '../../sys/etcd.js'
import {DEFAULT_STATE_DIR, MAX_VNI, type OverlayConf} from '../../services/overlay/config.js'
import {OverlayError} from '../../services/overlay/errors.js'
import type {NetConfList} from '../types.js'

/**
 * The overlay plugin's config: its conflist entry (the one `network create
 * -d overlay` writes, netconf/render.ts) parsed and checked once, into the
 * overlay service's OverlayConf plus what the plugin itself needs to
 * delegate to bridge. The network commands and the daemon parse a network's
 * entry here too (overlayNetworkOf); nothing else reads the entry's keys.
 */

/**
 * The CNI type of an overlay network's plugin entry: the name of the exec'd
 * plugin (`ctrnet cni plugin --install` puts it in /opt/cni/bin), so nerdctl
 * and containerd's CRI run the same conflist. The driver is still `overlay`.
 */
export const OVERLAY_TYPE = 'ctrnet-overlay'

/** An overlay plugin entry's type: `ctrnet-overlay`, or `overlay` as conflists written before it have it. */
export function isOverlayType(t: unknown): boolean {
  return t === OVERLAY_TYPE || t === 'overlay'
}

/** The seconds a host's slice lives in etcd without renewal, unless the entry says otherwise (leaseTTL). */
export const DEFAULT_LEASE_TTL = 86400

/** The default bridge of a network: ctrov<vni>. */
export function overlayBridge(vni: number): string {
  return `ctrov${vni}`
}

/** The overlay plugin's config: the service's values, and the bridge it delegates to. */
export interface OverlayPluginConf extends OverlayConf {
  cniVersion: string
  /** the bridge of the delegated bridge plugin */
  bridge: string
  /** host-local's dataDir, when not its default */
  ipamDataDir?: string
}

/**
 * An overlay plugin entry as a conflist holds it, with its network's name and
 * cniVersion (the plugin's netconf; the network commands and the daemon build
 * it from the conflist).
 */
export interface OverlayEntry {
  readonly name?: unknown
  readonly cniVersion: string
  readonly [key: string]: unknown
}

function invalid(msg: string): OverlayError {
  return new OverlayError('config', `overlay: ${msg}`)
}

function int(v: unknown, key: string, min: number, max: number, dflt?: number): number {
  if (v === undefined && dflt !== undefined) return dflt
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalid(`${key} must be an integer ${min}..${max}`)
  return v
}

function str(v: unknown, key: string): string {
  if (typeof v !== 'string' || v === '') throw invalid(`${key} must be a non-empty string`)
  return v
}

/** Checks that a subnet leaves room for at least two host slices of `size`. */
function checkSlices(subnet: Cidr, size: number): string | undefined {
  if (subnet.v6) return 'only IPv4 subnets are supported'
  if (size < 8 || size > 30) return `host-subnet-size ${size} must be 8..30`
  if (subnet.prefix >= size) return `subnet ${formatCidr(subnet)} is too small for host subnets of /${size} (it needs a prefix shorter than /${size})`
  return undefined
}

/** The overlay entry parsed and checked; an OverlayError (fault `config`) names what is wrong. */
export function loadOverlayConf(c: OverlayEntry): OverlayPluginConf {
  // the name names this host's state file
  if (!isNetworkName(c.name)) throw invalid(`network name ${JSON.stringify(c.name)} is not a file name`)
  const etcdText = str(c.etcd, 'etcd')
  let etcd: string[]
  try {
    etcd = parseEndpoints(etcdText)
  } catch (err) {
    throw invalid((err as Error).message)
  }
  let etcdTls: EtcdTls | undefined
  for (const [k, f] of [['etcdCert', 'cert'], ['etcdKey', 'key'], ['etcdCa', 'ca']] as const) {
    if (c[k] !== undefined) (etcdTls ??= {})[f] = str(c[k], k)
  }
  const tlsWhy = tlsProblem(etcd, etcdTls)
  if (tlsWhy) throw invalid(tlsWhy)
  const vni = int(c.vni, 'vni', 1, MAX_VNI)
  let subnet: Cidr
  try {
    subnet = parseCidr(str(c.subnet, 'subnet'))
  } catch {
    throw invalid(`subnet ${JSON.stringify(c.subnet)} is not a CIDR`)
  }
  if (formatCidr(networkOf(subnet)) !== formatCidr(subnet)) throw invalid(`subnet ${formatCidr(subnet)} has host bits set`)
  const hostSubnetSize = int(c.hostSubnetSize, 'hostSubnetSize', 8, 30, 24)
  const why = checkSlices(subnet, hostSubnetSize)
  if (why) throw invalid(why)
  let underlay: OverlayConf['underlay']
  if (c.underlay !== undefined) {
    const u = str(c.underlay, 'underlay')
    try {
      underlay = {ip: parseIp(u).ip}
    } catch {
      if (!validIfName(u)) throw invalid(`underlay ${JSON.stringify(u)} is neither an address nor an interface name`)
      underlay = {dev: u}
    }
  }
  const conf: OverlayPluginConf = {
    name: c.name,
    cniVersion: c.cniVersion,
    etcd,
    vni,
    subnet,
    hostSubnetSize,
    underlay,
    mtu: int(c.mtu, 'mtu', 0, 65535, 0),
    leaseTtl: int(c.leaseTTL, 'leaseTTL', 5, 10 * 365 * 86400, DEFAULT_LEASE_TTL),
    bridge: assertIfName(c.bridge ?? overlayBridge(vni), 'bridge name'),
    stateDir: c.stateDir === undefined ? DEFAULT_STATE_DIR : str(c.stateDir, 'stateDir'),
  }
  if (etcdTls) conf.etcdTls = etcdTls
  if (c.ipamDataDir !== undefined) conf.ipamDataDir = str(c.ipamDataDir, 'ipamDataDir')
  return conf
}

/**
 * An overlay network's config from its conflist (its first entry, with the
 * network's name and cniVersion), for the network commands and the daemon;
 * undefined when the network is not an overlay network. An OverlayError
 * (fault `config`) names what is wrong with the entry.
 */
export function overlayNetworkOf(conf: Pick<NetConfList, 'name' | 'cniVersion' | 'plugins'>): OverlayPluginConf | undefined {
  const p = conf.plugins[0]
  if (!isOverlayType(p?.type)) return undefined
  return loadOverlayConf({...p, name: conf.name, cniVersion: conf.cniVersion})
}

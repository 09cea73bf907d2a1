import {createHash} from 'node:crypto'
import {CtrnetError} from '../sys/errors.js'
import {isTlsFilePath} from '../sys/etcd.js'
import type {NetConfList, PluginConf} from '../plugins/types.js'
import {OVERLAY_TYPE, overlayBridge} from '../plugins/overlay/config.js'
// not validate.ts: it loads ip-address, and `network ls` loads this file
import {ifNameProblem, showToken} from '../kernel/tokens.js'
import {DEFAULT_NETWORK_LABEL} from './labels.js'
import {CREATED_NETWORK_NAME_RULE, DEFAULT_NETWORK_NAME} from './names.js'
import {
  type Cidr,
  type Subnet,
  DEFAULT_CIDR,
  STARTING_CIDR,
  contains,
  firstIp,
  getFreeSubnet,
  hasHostBits,
  lastIp,
  overlapsAny,
  parseCidr,
  networkText,
  parseIp,
} from './subnet.js'
import {lastOf, networkOf} from '../kernel/ip/addr.js'

/**
 * Renders the conflist nerdctl writes for `network create`, byte for byte:
 * nerdctl v2.3 pkg/netutil/netutil.go (cniNetworkConfig), netutil_unix.go
 * (generateCNIPlugins, generateIPAM, parseIPAMRanges), cni_plugin_unix.go (the
 * plugin structs and their JSON key order) and cni_plugin.go (IPAMRange), plus
 * the later upstream --ipv4 flag and repeatable --ip-range.
 *
 * Go details reproduced here:
 * - the ipam object goes through structToMap, so its keys (and each range's)
 *   come out sorted; plugin structs keep their field order;
 * - `omitempty` drops false/zero/empty values;
 * - json.MarshalIndent with two spaces, no trailing newline, and HTML escaping
 *   (<, >, & as \u003c, \u003e, \u0026).
 */

export const DEFAULT_BRIDGE_DEVICE = 'nerdctl0'
export const BRIDGE_NAME_OPTION = 'com.docker.network.bridge.name'
export const [GATEWAY_MODE_IPV4, GATEWAY_MODE_IPV6] = ['ipv4', 'ipv6'].map((f) => `com.docker.network.bridge.gateway_mode_${f}`) as [string, string]
export const DHCP_SOCKET = '/run/cni/dhcp.sock'
const NAME_PATTERN = new RegExp(CREATED_NETWORK_NAME_RULE)

export interface CreateOptions {
  name: string
  driver: string
  /** -o k=v, as given */
  options: string[]
  ipamDriver: string
  /** --ipam-opt k=v, as given */
  ipamOptions: string[]
  subnets: string[]
  gateways: string[]
  ipRanges: string[]
  /** --label k=v, as given */
  labels: string[]
  ipv6: boolean
  ipv4: boolean
  internal: boolean
  firewallBackend?: 'auto' | 'iptables' | 'nftables' // --firewall-backend (nerdctl has none): netconf/firewall-backend.ts writes it
}

export interface RenderContext {
  /** Subnets already used on the host and by every visible network */
  usedSubnets: Cidr[]
  /** Bridge device names already claimed by visible networks (for the bridge.name option) */
  usedBridgeNames?: Map<string, string>
}

export interface Rendered {
  id: string
  conf: NetConfList
  /** The exact file content */
  text: string
  warnings: string[]
}

export function networkId(name: string): string {
  return createHash('sha256').update(name).digest('hex')
}

export function defaultCreateOptions(name: string, over: Partial<CreateOptions> = {}): CreateOptions {
  return {
    name,
    driver: 'bridge',
    options: [],
    ipamDriver: 'default',
    ipamOptions: [],
    subnets: [],
    gateways: [],
    ipRanges: [],
    labels: [],
    ipv6: false,
    ipv4: true,
    internal: false,
    ...over,
  }
}

/** The options nerdctl uses for its default network `bridge` (createDefaultNetworkConfig). */
export function defaultBridgeOptions(): CreateOptions {
  return defaultCreateOptions(DEFAULT_NETWORK_NAME, {subnets: [DEFAULT_CIDR], labels: [`${DEFAULT_NETWORK_LABEL}=true`]})
}

/** strutil.ConvertKVStringsToMap: `k=v` -> k: v, `k` -> k: "" (last one wins). */
export function kvMap(values: string[]): Map<string, string> {
  const m = new Map<string, string>()
  for (const v of values) {
    const i = v.indexOf('=')
    if (i < 0) m.set(v, '')
    else m.set(v.slice(0, i), v.slice(i + 1))
  }
  return m
}

/** Go's JSON encoding of a value, as json.MarshalIndent(v, "", "  ") writes it. */
export function goJson(value: unknown, indent = 2, escapeHtml = true): string {
  let s = JSON.stringify(value, null, indent)
  if (escapeHtml) s = s.replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`)
  return s.replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029')
}

/** strconv.ParseBool */
function parseBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false
  return undefined
}

/** nerdctl parseMTU */
function parseMtu(what: string, k: string, v: string): number {
  if (v === '') return 0
  if (!/^[+-]?\d+$/.test(v) || !Number.isSafeInteger(Number(v))) {
    throw new CtrnetError(what, `invalid -o ${k}: strconv.Atoi: parsing ${showToken(v)}: invalid syntax`)
  }
  const m = Number(v)
  if (m < 0) throw new CtrnetError(what, `invalid -o ${k}: mtu ${m} is less than zero`)
  if (m > 65535) throw new CtrnetError(what, `invalid -o ${k}: mtu ${m} is more than 65535`)
  return m
}

/** An interface name given as `-o <key>`; refused as validate.ts refuses one. */
function ifNameOption(what: string, key: string, v: string): string {
  const why = ifNameProblem(v)
  if (why) throw new CtrnetError(what, `invalid -o ${key}: ${why}`)
  return v
}

interface IpamRange {
  subnet: string
  rangeStart?: string
  rangeEnd?: string
  gateway?: string
  ipRange?: string
}

/** One IPAMRange with Go's structToMap key order (sorted). */
function rangeObject(r: IpamRange): Record<string, string> {
  const o: Record<string, string> = {}
  if (r.gateway) o.gateway = r.gateway
  if (r.ipRange) o.ipRange = r.ipRange
  if (r.rangeEnd) o.rangeEnd = r.rangeEnd
  if (r.rangeStart) o.rangeStart = r.rangeStart
  o.subnet = r.subnet
  return o
}

/**
 * nerdctl's parseSubnet: "" allocates the first free subnet from 10.4.1.0/24;
 * otherwise the CIDR must parse, have no host bits set, and overlap nothing used.
 */
export function resolveSubnet(what: string, text: string, used: Cidr[]): Subnet {
  if (text === '') {
    const free = getFreeSubnet(parseCidr(STARTING_CIDR)!, used)
    if (!free) throw new CtrnetError(what, 'could not find free subnet')
    return free
  }
  const c = parseCidr(text)
  if (!c) throw new CtrnetError(what, `invalid --subnet: failed to parse subnet ${showToken(text)}: not a CIDR (e.g. 10.5.0.0/16)`)
  if (hasHostBits(c)) throw new CtrnetError(what, `subnet ${text} has host bits set; maybe you meant ${c.network}?`)
  const clash = overlapsAny(c, used)
  if (clash) throw new CtrnetError(what, `subnet ${text} overlaps with other one on this address space (${networkText(clash)})`)
  return c
}

/**
 * parseIPAMRanges + pairIPAMRanges: resolve every subnet, pair each gateway and
 * each ip-range with the first subnet that contains it (so a dual-stack network
 * gets the v4 one on the v4 subnet), build one range set per subnet.
 * IPv6 subnets are skipped (silently, as nerdctl) unless ipv6 is on.
 */
function buildRanges(
  what: string,
  subnets: string[],
  gateways: string[],
  ipRanges: string[],
  ipv6: boolean,
  used: Cidr[],
  warnings: string[] = [],
) {
  const resolved: Subnet[] = []
  for (const s of subnets) {
    const c = resolveSubnet(what, s, [...used, ...resolved])
    resolved.push(c)
  }
  const gws = gateways.map((g) => {
    const ip = parseIp(g)
    if (!ip) throw new CtrnetError(what, `invalid --gateway: failed to parse gateway ${showToken(g)}`)
    return ip
  })
  const rgs = ipRanges.map((r) => {
    const c = parseCidr(r)
    if (!c) throw new CtrnetError(what, `invalid --ip-range: failed to parse ip-range ${showToken(r)}`)
    return c
  })
  let findIPv4 = false
  const ranges: IpamRange[][] = []
  const usedGw = gws.map(() => false)
  const usedRg = rgs.map(() => false)
  for (const subnet of resolved) {
    if (!ipv6 && subnet.family === 6) {
      warnings.push(`subnet ${subnet.network} ignored: IPv6 subnets need --ipv6`)
      continue
    }
    if (subnet.family === 4) findIPv4 = true
    let gateway: string | undefined
    for (let j = 0; j < gws.length; j++) {
      if (!usedGw[j] && contains(subnet, gws[j]!.text)) {
        gateway = gws[j]!.text
        usedGw[j] = true
        break
      }
    }
    let ipRange: {text: string; cidr: Subnet} | undefined
    for (let j = 0; j < rgs.length; j++) {
      if (!usedRg[j] && contains(subnet, networkOf(rgs[j]!).ip)) {
        ipRange = {text: ipRanges[j]!, cidr: rgs[j]!}
        usedRg[j] = true
        break
      }
    }
    const r: IpamRange = {subnet: subnet.network, gateway: gateway ?? firstIp(subnet)}
    if (ipRange) {
      const endOk = contains(subnet, lastOf(ipRange.cidr))
      if (!endOk) {
        throw new CtrnetError(what, `no matching subnet ${JSON.stringify(subnet.network)} for ip-range ${JSON.stringify(ipRange.text)}`)
      }
      r.rangeStart = firstIp(ipRange.cidr)
      r.rangeEnd = lastIp(ipRange.cidr)
      r.ipRange = ipRange.text
    }
    ranges.push([r])
  }
  usedGw.forEach((ok, j) => {
    if (!ok) {
      const hint = !ipv6 && gws[j]!.family === 6 ? ' (IPv6 needs --ipv6)' : ''
      throw new CtrnetError(what, `no matching subnet for gateway ${JSON.stringify(gateways[j])}${hint}`)
    }
  })
  usedRg.forEach((ok, j) => {
    if (!ok) throw new CtrnetError(what, `no matching subnet for ip-range ${JSON.stringify(ipRanges[j])}`)
  })
  return {ranges, findIPv4, resolved}
}

function buildIpam(what: string, o: CreateOptions, ctx: RenderContext, warnings: string[]): Record<string, unknown> {
  switch (o.ipamDriver) {
    case 'default':
    case 'host-local': {
      for (const k of kvMap(o.ipamOptions).keys()) {
        warnings.push(`ipam option ${JSON.stringify(k)} ignored: only the dhcp ipam driver takes options`)
      }
      const subnets = o.subnets.length > 0 ? o.subnets : ['']
      const {ranges, findIPv4, resolved} = buildRanges(what, subnets, o.gateways, o.ipRanges, o.ipv6, ctx.usedSubnets, warnings)
      if (!o.ipv4 && findIPv4) throw new CtrnetError(what, '--ipv4=false conflicts with an IPv4 subnet')
      if (o.ipv4 && !findIPv4) {
        // The default IPv4 range: computed gateway, no ip-range.
        const extra = buildRanges(what, [''], [], [], o.ipv6, [...ctx.usedSubnets, ...resolved])
        ranges.push(...extra.ranges)
      }
      // structToMap sorts the keys: ranges, routes, type.
      const ipam: Record<string, unknown> = {}
      if (ranges.length > 0) ipam.ranges = ranges.map((set) => set.map(rangeObject))
      if (!o.internal) ipam.routes = [{dst: o.ipv4 ? '0.0.0.0/0' : '::/0'}]
      ipam.type = 'host-local'
      return ipam
    }
    case 'dhcp': {
      const opts = kvMap(o.ipamOptions)
      opts.set('host-name', '{"type": "provide", "fromArg": "NERDCTL_CNI_DHCP_HOSTNAME"}')
      const provide: Array<Record<string, string>> = []
      const request: Array<Record<string, unknown>> = []
      // Go iterates the option map in random order; we use sorted order.
      for (const name of [...opts.keys()].sort()) {
        const value = opts.get(name)!
        let parsed: Record<string, unknown>
        try {
          parsed = JSON.parse(value)
          if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object')
        } catch {
          throw new CtrnetError(what, `unparsable ipam option ${name} ${JSON.stringify(value)}`)
        }
        const str = (k: string) => (typeof parsed[k] === 'string' ? (parsed[k] as string) : '')
        if (parsed.type === 'provide') {
          provide.push({fromArg: str('fromArg'), option: name, value: str('value')})
        } else if (parsed.type === 'request') {
          request.push({option: name, skipDefault: parsed.skipDefault === true})
        } else {
          throw new CtrnetError(what, 'ipam option must have a type (provide or request)')
        }
      }
      const ipam: Record<string, unknown> = {daemonSocketPath: DHCP_SOCKET}
      if (provide.length) ipam.provide = provide
      if (request.length) ipam.request = request
      ipam.type = 'dhcp'
      return ipam
    }
    default:
      throw new CtrnetError(what, `unsupported ipam driver ${JSON.stringify(o.ipamDriver)} (use default, host-local or dhcp)`)
  }
}

function buildPlugins(what: string, o: CreateOptions, ipam: Record<string, unknown>, ctx: RenderContext): PluginConf[] {
  const opts = kvMap(o.options)
  switch (o.driver) {
    case 'bridge': {
      let mtu = 0
      let ipMasq = true
      let icc = true
      const routed: Record<4 | 6, boolean> = {4: false, 6: false}
      let device = o.name === DEFAULT_NETWORK_NAME ? DEFAULT_BRIDGE_DEVICE : 'br-' + networkId(o.name).slice(0, 12)
      for (const [k, v] of opts) {
        switch (k) {
          case 'mtu':
          case 'com.docker.network.driver.mtu':
            mtu = parseMtu(what, k, v)
            break
          case 'ip-masq':
          case 'com.docker.network.bridge.enable_ip_masquerade':
          case 'icc':
          case 'com.docker.network.bridge.enable_icc': {
            const b = parseBool(v)
            if (b === undefined) throw new CtrnetError(what, `invalid -o ${k}: strconv.ParseBool: parsing ${showToken(v)}: invalid syntax`)
            if (k.includes('masq')) ipMasq = b
            else icc = b
            break
          }
          case BRIDGE_NAME_OPTION:
            device = ifNameOption(what, k, v)
            break
          case GATEWAY_MODE_IPV4: // Docker's gateway modes: nat, or routed (new connections from outside reach the containers too)
          case GATEWAY_MODE_IPV6:
            if (v !== 'nat' && v !== 'routed') throw new CtrnetError(what, `invalid -o ${k}: ${showToken(v)} is not one of nat, routed`)
            routed[k === GATEWAY_MODE_IPV4 ? 4 : 6] = v === 'routed'
            break
          default:
            throw new CtrnetError(what, `unsupported ${JSON.stringify(o.driver)} network option ${JSON.stringify(k)}`)
        }
      }
      const owner = ctx.usedBridgeNames?.get(device)
      if (owner !== undefined && owner !== o.name) {
        throw new CtrnetError(what, `bridge ${JSON.stringify(device)} is already used by network ${JSON.stringify(owner)}`)
      }
      const bridge: PluginConf = {type: 'bridge', bridge: device}
      if (!o.internal) bridge.isGateway = true
      if (!o.internal && ipMasq) bridge.ipMasq = true
      if (mtu) bridge.mtu = mtu
      bridge.hairpinMode = true
      bridge.ipam = ipam as PluginConf['ipam']
      if (o.ipv6) bridge.capabilities = {ips: true}
      const firewall: PluginConf = {type: 'firewall', ingressPolicy: icc ? 'same-bridge' : 'isolated'} // icc=false: as nerdctl (reference >= v1.7.1)
      for (const f of [4, 6] as const) if (routed[f]) firewall[`gatewayModeIPv${f}`] = 'routed'
      const plugins: PluginConf[] = [bridge]
      if (!o.internal) plugins.push({type: 'portmap', capabilities: {portMappings: true}})
      plugins.push(firewall, {type: 'tuning'})
      return plugins
    }
    case 'macvlan':
    case 'ipvlan': {
      let mtu = 0
      let mode = ''
      let master = ''
      for (const [k, v] of opts) {
        switch (k) {
          case 'mtu':
          case 'com.docker.network.driver.mtu':
            mtu = parseMtu(what, k, v)
            break
          case 'mode':
          case 'macvlan_mode':
          case 'ipvlan_mode':
            if (o.driver === 'macvlan' && k !== 'ipvlan_mode') {
              if (v.toLowerCase() !== 'bridge') throw new CtrnetError(what, `unknown macvlan mode ${JSON.stringify(v)}`)
            } else if (o.driver === 'ipvlan' && k !== 'macvlan_mode') {
              if (!['l2', 'l3'].includes(v.toLowerCase())) throw new CtrnetError(what, `unknown ipvlan mode ${JSON.stringify(v)}`)
            } else {
              throw new CtrnetError(what, `unsupported ${JSON.stringify(o.driver)} network option ${JSON.stringify(k)}`)
            }
            mode = v
            break
          case 'parent':
            master = ifNameOption(what, k, v)
            break
          default:
            throw new CtrnetError(what, `unsupported ${JSON.stringify(o.driver)} network option ${JSON.stringify(k)}`)
        }
      }
      const p: PluginConf = {type: o.driver, master}
      if (mode) p.mode = mode
      if (mtu) p.mtu = mtu
      p.ipam = ipam as PluginConf['ipam']
      if (o.ipv6) p.capabilities = {ips: true}
      return [p]
    }
    case 'overlay':
      return buildOverlay(what, o, ctx)
    default:
      throw new CtrnetError(what, `unsupported cni driver ${JSON.stringify(o.driver)} (use bridge, macvlan, ipvlan or overlay)`)
  }
}

/** A positive decimal integer option in min..max, or one line naming it. */
function intOption(what: string, k: string, v: string, min: number, max: number): number {
  const n = /^[0-9]{1,10}$/.test(v) ? Number(v) : NaN
  if (!Number.isInteger(n) || n < min || n > max) throw new CtrnetError(what, `invalid -o ${k}=${showToken(v)}: must be an integer ${min}..${max}`)
  return n
}

/**
 * `-d overlay`: ctrnet's own conflist (nerdctl has no overlay driver): the
 * overlay meta plugin, which leases this host's slice in etcd and delegates
 * to bridge + host-local, then portmap, firewall and tuning as on a bridge
 * network. The options are checked here; etcd is reached by the caller.
 */
function buildOverlay(what: string, o: CreateOptions, ctx: RenderContext): PluginConf[] {
  if (o.subnets.length !== 1) throw new CtrnetError(what, 'an overlay network needs exactly one --subnet (IPv4), e.g. --subnet 10.200.0.0/16')
  if (o.gateways.length || o.ipRanges.length) throw new CtrnetError(what, 'an overlay network takes no --gateway or --ip-range: each host gets a slice of the subnet')
  if (o.ipv6) throw new CtrnetError(what, 'an overlay network is IPv4 only (no --ipv6)')
  if (o.internal) throw new CtrnetError(what, 'an overlay network cannot be --internal')
  if (o.ipamDriver !== 'default' && o.ipamDriver !== 'host-local') throw new CtrnetError(what, `an overlay network uses host-local IPAM, not ${JSON.stringify(o.ipamDriver)}`)
  const subnet = resolveSubnet(what, o.subnets[0]!, ctx.usedSubnets)
  if (subnet.family !== 4) throw new CtrnetError(what, 'an overlay network is IPv4 only')
  const opts = kvMap(o.options)
  let etcd = ''
  let vni = 0
  let size = 24
  let underlay = ''
  let mtu = 0
  let ttl = 0
  const tls: Record<string, string> = {}
  for (const [k, v] of opts) {
    switch (k) {
      case 'etcd':
        etcd = v
        break
      case 'vni':
        vni = intOption(what, k, v, 1, 16777215)
        break
      case 'host-subnet-size':
        size = intOption(what, k, v, 8, 30)
        break
      case 'underlay':
        if (v === '' || (parseIp(v) === undefined && ifNameProblem(v))) throw new CtrnetError(what, `invalid -o underlay=${showToken(v)}: neither an IPv4 address nor an interface name`)
        underlay = v
        break
      case 'mtu':
      case 'com.docker.network.driver.mtu':
        mtu = parseMtu(what, k, v)
        break
      case 'lease-ttl':
        ttl = intOption(what, k, v, 5, 10 * 365 * 86400)
        break
      case 'etcd-cert':
      case 'etcd-key':
      case 'etcd-ca':
        if (!isTlsFilePath(v)) throw new CtrnetError(what, `invalid -o ${k}=${showToken(v)}: must be an absolute file path`)
        tls[k] = v
        break
      default:
        throw new CtrnetError(what, `unsupported "overlay" network option ${JSON.stringify(k)} (etcd, etcd-cert, etcd-key, etcd-ca, vni, host-subnet-size, underlay, mtu, lease-ttl)`)
    }
  }
  if (!etcd) throw new CtrnetError(what, 'an overlay network needs -o etcd=http://HOST:2379[,...]')
  if (!vni) throw new CtrnetError(what, 'an overlay network needs -o vni=N (1..16777215)')
  const c = parseCidr(subnet.network)!
  if (c.prefix >= size) {
    throw new CtrnetError(what, `subnet ${subnet.network} is too small for host subnets of /${size}: give a prefix shorter than /${size} or a larger -o host-subnet-size`)
  }
  if (Boolean(tls['etcd-cert']) !== Boolean(tls['etcd-key'])) throw new CtrnetError(what, '-o etcd-cert and -o etcd-key go together')
  const plain = etcd.split(',').find((e) => !e.trim().startsWith('https://'))
  if (Object.keys(tls).length && plain !== undefined) throw new CtrnetError(what, `-o etcd-cert/etcd-key/etcd-ca need https:// endpoints, not ${showToken(plain.trim())}`)
  const overlay: PluginConf = {type: OVERLAY_TYPE, etcd, vni, subnet: subnet.network, hostSubnetSize: size}
  if (tls['etcd-cert']) overlay.etcdCert = tls['etcd-cert']
  if (tls['etcd-key']) overlay.etcdKey = tls['etcd-key']
  if (tls['etcd-ca']) overlay.etcdCa = tls['etcd-ca']
  if (underlay) overlay.underlay = underlay
  if (mtu) overlay.mtu = mtu
  if (ttl) overlay.leaseTTL = ttl
  overlay.bridge = overlayBridge(vni)
  return [overlay, {type: 'portmap', capabilities: {portMappings: true}}, {type: 'firewall', ingressPolicy: 'same-bridge'}, {type: 'tuning'}]
}

/** Checks the name and flag combinations that need no disk access (pkg/cmd/network/create.go). */
export function validateCreateOptions(o: CreateOptions): void {
  const what = `network create ${o.name}`
  if (!NAME_PATTERN.test(o.name)) {
    throw new CtrnetError(
      'network create',
      `invalid network name ${JSON.stringify(o.name)}: must match ${CREATED_NETWORK_NAME_RULE} (at least 2 characters)`,
    )
  }
  if (Buffer.byteLength(o.name) > 200) throw new CtrnetError(what, 'network name is too long (at most 200 bytes)')
  if (!o.ipv4 && !o.ipv6) throw new CtrnetError(what, 'IPv4 or IPv6 must be enabled')
  if (!o.ipv4 && o.subnets.length === 0) {
    throw new CtrnetError(what, 'IPv6-only network requires an IPv6 subnet, specify --subnet manually')
  }
  if (o.subnets.length === 0 && (o.gateways.length > 0 || o.ipRanges.length > 0)) {
    throw new CtrnetError(what, 'cannot set gateway or ip-range without subnet, specify --subnet manually')
  }
}

/**
 * Renders the conflist for a create. Throws CtrnetError for every invalid
 * input; writes nothing. Labels are deduplicated, later `k=` wins, as nerdctl.
 */
export function renderNetwork(o: CreateOptions, ctx: RenderContext): Rendered {
  validateCreateOptions(o)
  const what = `network create ${o.name}`
  const warnings: string[] = []
  // an overlay network's IPAM is per host (its slice): the overlay plugin builds it
  const ipam = o.driver === 'overlay' ? {} : buildIpam(what, o, ctx, warnings)
  const plugins = buildPlugins(what, o, ipam, ctx)
  const id = networkId(o.name)
  const labels = kvMap(o.labels)
  // Key order of cniNetworkConfig: cniVersion, name, nerdctlID, nerdctlLabels (omitempty), plugins.
  let nerdctlLabels: Record<string, string> | undefined
  if (labels.size > 0) {
    // Go marshals a map with sorted keys.
    nerdctlLabels = {}
    for (const k of [...labels.keys()].sort()) nerdctlLabels[k] = labels.get(k)!
  }
  const conf: NetConfList = nerdctlLabels
    ? {cniVersion: '1.0.0', name: o.name, nerdctlID: id, nerdctlLabels, plugins}
    : {cniVersion: '1.0.0', name: o.name, nerdctlID: id, plugins}
  return {id, conf, text: goJson(conf), warnings}
}

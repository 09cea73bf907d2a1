/**
 * firewall, as containernetworking/plugins (plugins/meta/firewall), backend
 * iptables only, ingressPolicy "open", "same-bridge" (v1.1.1) and "isolated"
 * (v1.7.1): its config, versions and errors (and the network's firewall backend, see firewallUse). ADD and DEL state what the
 * container's forwarded traffic needs on the request's firewall transaction
 * (kernel/netfilter/firewall.ts), which the runtime commits once for the
 * whole chain; the rules (CNI-FORWARD, CNI-ADMIN, CNI-ISOLATION-STAGE-1/2,
 * the reference's own, and ctrnet's per-bridge exposure) are the backend's.
 * DEL removes the container's own rules only, like the reference.
 *
 * ctrnet's own keys (the reference's Go decoding ignores unknown keys):
 * "gatewayModeIPv4"/"gatewayModeIPv6": "routed" (Docker's gateway_mode_*:
 * new connections from outside reach the containers directly; otherwise only
 * through published ports), the ForwardPolicy's exposure per family.
 *
 * "isolated" (icc=false): the reference drops `-i <br> -o <br>` in
 * CNI-ISOLATION-STAGE-1, which sees the traffic between two containers of a
 * bridge only when br_netfilter hands bridged frames to iptables
 * (bridge-nf-call-iptables=1); ctrnet writes the same rules (so that both
 * undo each other's attachments) and, so that isolation holds on a host
 * without br_netfilter too, also sets the container's bridge port
 * `isolated on` (the kernel's bridge port isolation, Linux >= 4.18: an
 * isolated port forwards nothing to another isolated port, at L2, ARP
 * included; the bridge device itself, i.e. the gateway, the way out and the
 * published ports, is not a port and stays reachable). The flag goes with
 * the veth at DEL. A reference ADD sets no flag: there isolation needs
 * br_netfilter.
 */
import {existsSync, readFileSync} from 'node:fs'
import {CNI_ERR, CniError, type CniResult, type EmbeddedPlugin, type PluginNetConf, type PluginRequest} from '../types.js'
import * as f from '../fields.js'
import {familyOf, type Family} from '../../kernel/ip/addr.js'
import {ipBatch} from '../../kernel/ip/batch.js'
import {bridgePorts, cmdLinkSet, linkAttr} from '../../kernel/ip/link.js'
import type {ForwardPolicy, ForwardedContainer} from '../../kernel/netfilter/firewall.js'

export const DEFAULT_ADMIN_CHAIN = 'CNI-ADMIN'
const SUPPORTED_VERSIONS = ['0.4.0', '1.0.0']

export type IngressPolicy = 'open' | 'same-bridge' | 'isolated'
export type Exposure = ForwardPolicy['exposure']

export interface FirewallConf {
  /** `"backend": "iptables"` given (the reference's choice between iptables and firewalld). */
  backend?: 'iptables'
  adminChain: string
  ingressPolicy: IngressPolicy
  /** Per family: gatewayModeIPv4/IPv6 "routed" -> routed, else published. */
  exposure: Record<Family, Exposure>
}

function invalid(msg: string): CniError {
  return new CniError(CNI_ERR.INVALID_NETCONF, msg)
}

/** firewalld answers on D-Bus; we only look for its pid file and a live process. */
function firewalldRunning(): boolean {
  for (const f of ['/run/firewalld.pid', '/var/run/firewalld.pid']) {
    if (!existsSync(f)) continue
    const pid = Number.parseInt(readFileSync(f, 'utf8').trim(), 10)
    if (!Number.isInteger(pid) || pid <= 0) continue
    try {
      process.kill(pid, 0)
      return true
    } catch {
      // stale pid file
    }
  }
  return false
}

export function parseFirewallConf(config: PluginRequest['config']): FirewallConf {
  const c = config as Record<string, unknown>
  const backend = c.backend == null || c.backend === '' ? undefined : String(c.backend)
  if (backend === 'firewalld' || (backend === undefined && firewalldRunning())) {
    throw new CniError(
      CNI_ERR.INVALID_NETCONF,
      'firewall backend firewalld is not supported by the embedded firewall plugin',
      'set "backend": "iptables" or run the reference plugin with --cni-mode exec',
    )
  }
  if (backend !== undefined && backend !== 'iptables') throw invalid(`unknown firewall backend: ${JSON.stringify(backend)}`)
  const policy = c.ingressPolicy == null || c.ingressPolicy === '' ? 'open' : String(c.ingressPolicy)
  if (policy !== 'open' && policy !== 'same-bridge' && policy !== 'isolated') throw invalid(`unknown ingress policy: ${JSON.stringify(policy)}`)
  const admin = c.iptablesAdminChainName ? String(c.iptablesAdminChainName) : DEFAULT_ADMIN_CHAIN
  const exposure = (v: unknown): Exposure => (v === 'routed' ? 'routed' : 'published')
  return {
    ...(backend === 'iptables' ? {backend} : {}),
    adminChain: admin,
    ingressPolicy: policy,
    exposure: {4: exposure(c.gatewayModeIPv4), 6: exposure(c.gatewayModeIPv6)},
  }
}

function checkVersion(config: PluginRequest['config']): void {
  // The reference firewall plugin speaks 0.4.0 and later only.
  const v = config.cniVersion
  if (v && (v.startsWith('0.1') || v.startsWith('0.2') || v.startsWith('0.3'))) {
    throw new CniError(
      CNI_ERR.INCOMPATIBLE_VERSION,
      `incompatible CNI versions; config is "${v}", plugin supports [${SUPPORTED_VERSIONS.map((s) => `"${s}"`).join(' ')}]`,
    )
  }
}

function familiesOf(result: CniResult | undefined): Family[] {
  return [...new Set((result?.ips ?? []).map((ip) => familyOf(ip.address.split('/')[0]!)))]
}

const ISOLATION = {open: 'none', 'same-bridge': 'bridge', isolated: 'isolated'} as const satisfies Record<IngressPolicy, ForwardPolicy['isolation']>

/** What the firewall plugin's config asks of the firewall for one family, in the seam's words. */
export function forwardPolicy(conf: FirewallConf, family: Family = 4): ForwardPolicy {
  return {adminChain: conf.adminChain, isolation: ISOLATION[conf.ingressPolicy], exposure: conf.exposure[family]}
}

/**
 * The needs of one container, one per exposure: both families in one when
 * they share it, else one per family (each with its own addresses).
 */
function needs(conf: FirewallConf, prev: Pick<CniResult, 'interfaces' | 'ips'>): Array<[ForwardPolicy, ForwardedContainer]> {
  const on = forwardedContainer(prev)
  if (conf.exposure[4] === conf.exposure[6]) return [[forwardPolicy(conf), on]]
  return ([4, 6] as const).flatMap((fam): Array<[ForwardPolicy, ForwardedContainer]> => {
    const addresses = on.addresses.filter((a) => familyOf(a.split('/')[0]!) === fam)
    return addresses.length ? [[forwardPolicy(conf, fam), {...on, addresses}]] : []
  })
}

/**
 * The container's ports on the bridge (interfaces[0]): the host-side
 * interfaces of the result (no sandbox) that are ports of that bridge.
 */
function bridgePortsOf(prev: Pick<CniResult, 'interfaces'>): string[] {
  const [bridge, ...rest] = prev.interfaces ?? []
  if (!bridge?.name) return []
  const ports = new Set(bridgePorts(bridge.name))
  return rest.filter((i) => !i.sandbox && i.name && ports.has(i.name)).map((i) => i.name)
}

/** "isolated": the container's bridge ports isolated (see the header: holds without br_netfilter). */
async function isolatePorts(prev: Pick<CniResult, 'interfaces'>): Promise<void> {
  const ports = bridgePortsOf(prev)
  if (!ports.length) return
  try {
    await ipBatch(ports.map((p) => cmdLinkSet(p, 'type', 'bridge_slave', 'isolated', 'on')))
  } catch (err) {
    throw new CniError(CNI_ERR.INTERNAL, 'firewall: bridge port isolation', err instanceof Error ? err.message : String(err))
  }
}

/** CHECK of "isolated": the first bridge port of the container that is not isolated. */
function unisolatedPort(prev: Pick<CniResult, 'interfaces'>): string | undefined {
  const port = bridgePortsOf(prev).find((p) => linkAttr(p, 'brport/isolated') !== '1')
  return port && `bridge port ${port} is not isolated (ingressPolicy "isolated")`
}

/** The container as the previous result reports it: its addresses and, first of its interfaces, its bridge. */
export function forwardedContainer(result: Pick<CniResult, 'interfaces' | 'ips'>): ForwardedContainer {
  const bridge = result.interfaces?.[0]?.name
  // the host end of the container's veth: the first interface after the bridge with no sandbox
  const port = result.interfaces?.slice(1).find((i) => !i.sandbox && i.name)?.name
  return {addresses: (result.ips ?? []).map((ip) => ip.address), ...(bridge ? {bridge} : {}), ...(bridge && port ? {port} : {})}
}

/** Records a change on the chain's firewall transaction; a refusal is the plugin's error. */
async function recorded(change: Promise<void>): Promise<void> {
  try {
    await change
  } catch (err) {
    throw new CniError(CNI_ERR.INTERNAL, 'firewall: iptables', err instanceof Error ? err.message : String(err))
  }
}

/** The fields of a firewall entry, refused by name (`plugins[2].ingressPolicy`). */
function checkFields(c: PluginNetConf, at: string): void {
  if (f.given(c.backend) && c.backend !== '' && c.backend !== 'iptables' && c.backend !== 'firewalld') f.refuse(`${at}.backend`, f.notA('iptables or firewalld', c.backend))
  if (f.given(c.ingressPolicy) && c.ingressPolicy !== '' && c.ingressPolicy !== 'open' && c.ingressPolicy !== 'same-bridge' && c.ingressPolicy !== 'isolated') {
    f.refuse(`${at}.ingressPolicy`, f.notA('open, same-bridge or isolated', c.ingressPolicy))
  }
  if (f.given(c.iptablesAdminChainName) && c.iptablesAdminChainName !== '') f.chainName(c.iptablesAdminChainName, `${at}.iptablesAdminChainName`)
  for (const k of ['gatewayModeIPv4', 'gatewayModeIPv6'] as const) {
    if (f.given(c[k]) && c[k] !== '' && c[k] !== 'nat' && c[k] !== 'routed') f.refuse(`${at}.${k}`, f.notA('nat or routed', c[k]))
  }
}

/** firewall's `parse`: its fields by name, then the reference's version and config checks. */
function parse(config: PluginNetConf, at: string): FirewallConf {
  checkFields(config, at)
  checkVersion(config)
  return parseFirewallConf(config)
}

const firewall: EmbeddedPlugin<FirewallConf> = {
  parse,
  programs: () => [],
  // the reference plugin has no nftables mode: ctrnet's follows the network's backend, or iptables when the entry names it
  firewallUse: (conf) => ({needs: true, ...(conf.backend ? {named: conf.backend} : {}), otherwise: 'network'}),
  async add(req, conf) {
    const prev = req.config.prevResult
    if (!prev) throw invalid('missing prevResult from earlier plugin')
    const fams = familiesOf(prev)
    if (conf.ingressPolicy !== 'open' && fams.length > 0) {
      if (!prev.interfaces?.length) {
        throw invalid(`interface needs to be set for ingress policy "${conf.ingressPolicy}", make sure to chain "firewall" plugin with "bridge"`)
      }
      if (!prev.interfaces[0]!.name) throw invalid('got empty bridge name')
    }
    if (fams.length === 0) return prev
    for (const [policy, on] of needs(conf, prev)) await recorded(req.firewall.acceptForwarding(policy, on))
    if (conf.ingressPolicy === 'isolated') await isolatePorts(prev)
    return prev
  },

  async del(req) {
    const prev = req.config.prevResult
    const fams = familiesOf(prev)
    if (fams.length === 0) return // nothing to identify the rules by (as the reference)
    await recorded(req.firewall.removeForwarding(forwardedContainer(prev!)))
  },

  async check(req, conf) {
    const prev = req.config.prevResult
    if (!prev) throw invalid('missing prevResult from earlier plugin')
    const fams = familiesOf(prev)
    if (fams.length === 0) return
    for (const [policy, on] of needs(conf, prev)) {
      const problem = await req.firewall.checkForwarding(policy, on)
      if (problem) throw new CniError(CNI_ERR.INTERNAL, problem)
    }
    const problem = conf.ingressPolicy === 'isolated' ? unisolatedPort(prev) : undefined
    if (problem) throw new CniError(CNI_ERR.INTERNAL, problem)
  },
}

export default firewall

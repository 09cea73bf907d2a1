/**
 * firewall, as containernetworking/plugins v1.1.1 (plugins/meta/firewall),
 * backend iptables only, ingressPolicy "open" and "same-bridge": its config,
 * versions and errors. ADD and DEL state what the container's forwarded
 * traffic needs on the request's firewall transaction
 * (kernel/netfilter/firewall.ts), which the runtime commits once for the
 * whole chain; the rules (CNI-FORWARD, CNI-ADMIN, CNI-ISOLATION-STAGE-1/2,
 * the reference's own) are the backend's:
 * kernel/netfilter/iptables/forwarding.ts. DEL removes the container's own
 * rules only, like the reference.
 */
import {existsSync, readFileSync} from 'node:fs'
import {CNI_ERR, CniError, type CniResult, type EmbeddedPlugin, type PluginNetConf, type PluginRequest} from '../types.js'
import * as f from '../fields.js'
import {FIREWALL_PROGRAMS} from '../programs.js'
import {familyOf, type Family} from '../../kernel/ip/addr.js'
import type {ForwardPolicy, ForwardedContainer} from '../../kernel/netfilter/firewall.js'

export const DEFAULT_ADMIN_CHAIN = 'CNI-ADMIN'
const SUPPORTED_VERSIONS = ['0.4.0', '1.0.0']

export interface FirewallConf {
  adminChain: string
  ingressPolicy: 'open' | 'same-bridge'
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
  if (policy !== 'open' && policy !== 'same-bridge') throw invalid(`unknown ingress policy: ${JSON.stringify(policy)}`)
  const admin = c.iptablesAdminChainName ? String(c.iptablesAdminChainName) : DEFAULT_ADMIN_CHAIN
  return {adminChain: admin, ingressPolicy: policy}
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

/** What the firewall plugin's config asks of the firewall, in the seam's words. */
export function forwardPolicy(conf: FirewallConf): ForwardPolicy {
  return {adminChain: conf.adminChain, isolation: conf.ingressPolicy === 'same-bridge' ? 'bridge' : 'none', exposure: 'routed'}
}

/** The container as the previous result reports it: its addresses and, first of its interfaces, its bridge. */
export function forwardedContainer(result: Pick<CniResult, 'interfaces' | 'ips'>): ForwardedContainer {
  const bridge = result.interfaces?.[0]?.name
  return {addresses: (result.ips ?? []).map((ip) => ip.address), ...(bridge ? {bridge} : {})}
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
}

/** firewall's `parse`: its fields by name, then the reference's version and config checks. */
function parse(config: PluginNetConf, at: string): FirewallConf {
  checkFields(config, at)
  checkVersion(config)
  return parseFirewallConf(config)
}

const firewall: EmbeddedPlugin<FirewallConf> = {
  parse,
  programs: () => [...FIREWALL_PROGRAMS],
  async add(req, conf) {
    const prev = req.config.prevResult
    if (!prev) throw invalid('missing prevResult from earlier plugin')
    const fams = familiesOf(prev)
    if (conf.ingressPolicy === 'same-bridge' && fams.length > 0) {
      if (!prev.interfaces?.length) {
        throw invalid('interface needs to be set for ingress policy "same-bridge", make sure to chain "firewall" plugin with "bridge"')
      }
      if (!prev.interfaces[0]!.name) throw invalid('got empty bridge name')
    }
    if (fams.length === 0) return prev
    await recorded(req.firewall.acceptForwarding(forwardPolicy(conf), forwardedContainer(prev)))
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
    const problem = await req.firewall.checkForwarding(forwardPolicy(conf), forwardedContainer(prev))
    if (problem) throw new CniError(CNI_ERR.INTERNAL, problem)
  },
}

export default firewall

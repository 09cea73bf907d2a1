/**
 * firewall, as containernetworking/plugins v1.1.1 (plugins/meta/firewall),
 * iptables backend only, ingressPolicy "open" and "same-bridge". ADD and DEL
 * record their changes (table filter) on the request's netfilter transaction,
 * which the runtime commits once for the whole chain.
 *
 *   FORWARD      -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD        (inserted at 1)
 *   CNI-FORWARD  -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN (inserted at 1)
 *   CNI-FORWARD  -d <ip>/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT       (per IP, appended)
 *   CNI-FORWARD  -s <ip>/32 -j ACCEPT
 * same-bridge (after the above, for each family with an address):
 *   FORWARD               -m comment --comment "<C>" -j CNI-ISOLATION-STAGE-1          (inserted at 1)
 *   CNI-ISOLATION-STAGE-1 -i <br> ! -o <br> -m comment --comment "<C>" -j CNI-ISOLATION-STAGE-2 (inserted at 1)
 *   CNI-ISOLATION-STAGE-1 -m comment --comment "<C>" -j RETURN                           (appended)
 *   CNI-ISOLATION-STAGE-2 -o <br> -m comment --comment "<C>" -j DROP                     (inserted at 1)
 *   CNI-ISOLATION-STAGE-2 -m comment --comment "<C>" -j RETURN                           (appended)
 *
 * DEL removes the per-IP rules only. Like the reference, the isolation rules
 * of a bridge are left in place (another container may still use the bridge)
 * and so are the shared chains, so that our DEL after a reference ADD and the
 * reference DEL after ours leave the same tables.
 */
import {existsSync, readFileSync} from 'node:fs'
import {CNI_ERR, CniError, type CniResult, type EmbeddedPlugin, type PluginNetConf, type PluginRequest} from '../types.js'
import * as f from '../fields.js'
import {IPTABLES_PROGRAMS} from '../programs.js'
import {familyOf, type Family} from '../../kernel/ip/addr.js'
import {readStates, saveForm, type Ruleset, type TransactOptions, type Tx} from '../../kernel/netfilter/iptables.js'

export const PRIV_CHAIN = 'CNI-FORWARD'
export const DEFAULT_ADMIN_CHAIN = 'CNI-ADMIN'
export const STAGE1_CHAIN = 'CNI-ISOLATION-STAGE-1'
export const STAGE2_CHAIN = 'CNI-ISOLATION-STAGE-2'
const ISOLATION_COMMENT = 'CNI firewall plugin rules (ingressPolicy: same-bridge)'
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

/** "<ip>/32" or "<ip>/128" for an address given as CIDR. */
export function hostCidr(address: string): string {
  const ip = address.split('/')[0]!
  return familyOf(ip) === 4 ? `${ip}/32` : `${ip}/128`
}

export function privChainRules(address: string): string[] {
  const ip = hostCidr(address)
  return [
    saveForm(['-d', ip, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']),
    saveForm(['-s', ip, '-j', 'ACCEPT']),
  ]
}

export function filterRule(privChain: string): string {
  return saveForm(['-m', 'comment', '--comment', 'CNI firewall plugin rules', '-j', privChain])
}

export function adminRule(adminChain: string): string {
  return saveForm(['-m', 'comment', '--comment', 'CNI firewall plugin admin overrides', '-j', adminChain])
}

export function isolationRules(bridge: string): {jump: string; stage1Bridge: string; stage1Return: string; stage2Bridge: string; stage2Return: string} {
  const c = (r: string[]) => saveForm([...r, '-m', 'comment', '--comment', ISOLATION_COMMENT])
  return {
    jump: c(['-j', STAGE1_CHAIN]),
    stage1Bridge: c(['-i', bridge, '!', '-o', bridge, '-j', STAGE2_CHAIN]),
    stage1Return: c(['-j', 'RETURN']),
    stage2Bridge: c(['-o', bridge, '-j', 'DROP']),
    stage2Return: c(['-j', 'RETURN']),
  }
}

function ipsOf(result: CniResult | undefined, family: Family): string[] {
  return (result?.ips ?? []).map((ip) => ip.address).filter((a) => familyOf(a.split('/')[0]!) === family)
}

/** iptablesBackend.addRules + setupIngressPolicy for one family. */
export function planAdd(tx: Tx, conf: FirewallConf, result: CniResult): void {
  const rules = ipsOf(result, tx.family).flatMap(privChainRules)
  if (rules.length === 0) return
  tx.ensureChain('filter', PRIV_CHAIN)
  tx.ensureChain('filter', conf.adminChain)
  tx.insertUnique('filter', 'FORWARD', filterRule(PRIV_CHAIN))
  tx.insertUnique('filter', PRIV_CHAIN, adminRule(conf.adminChain))
  for (const r of rules) tx.appendUnique('filter', PRIV_CHAIN, r)

  if (conf.ingressPolicy === 'same-bridge') {
    const bridge = result.interfaces?.[0]?.name
    if (!bridge) throw new Error('unreachable: checked before planning')
    const iso = isolationRules(bridge)
    tx.ensureChain('filter', STAGE1_CHAIN)
    tx.ensureChain('filter', STAGE2_CHAIN)
    tx.insertUnique('filter', 'FORWARD', iso.jump)
    tx.insertUnique('filter', STAGE1_CHAIN, iso.stage1Bridge)
    tx.appendUnique('filter', STAGE1_CHAIN, iso.stage1Return)
    tx.insertUnique('filter', STAGE2_CHAIN, iso.stage2Bridge)
    tx.appendUnique('filter', STAGE2_CHAIN, iso.stage2Return)
  }
}

/** iptablesBackend.delRules for one family: the per-IP rules, every copy. */
export function planDel(tx: Tx, result: CniResult | undefined): void {
  for (const r of ipsOf(result, tx.family).flatMap(privChainRules)) tx.deleteRule('filter', PRIV_CHAIN, r)
}

/** checkRules for one family. Returns the problem or undefined. */
export function checkIn(state: Ruleset, conf: FirewallConf, result: CniResult): string | undefined {
  const rules = ipsOf(result, state.family).flatMap(privChainRules)
  if (rules.length === 0) return undefined
  for (const chain of [PRIV_CHAIN, conf.adminChain]) {
    if (!state.hasChain('filter', chain)) return `chain ${chain} not found in iptables table filter`
  }
  if (!state.hasRule('filter', 'FORWARD', filterRule(PRIV_CHAIN))) return `expected FORWARD rule ${filterRule(PRIV_CHAIN)} not found`
  if (!state.hasRule('filter', PRIV_CHAIN, adminRule(conf.adminChain))) {
    return `expected ${PRIV_CHAIN} rule ${adminRule(conf.adminChain)} not found`
  }
  for (const r of rules) if (!state.hasRule('filter', PRIV_CHAIN, r)) return `expected rule ${r} not found`
  return undefined
}

function familiesOf(result: CniResult | undefined): Family[] {
  return [...new Set((result?.ips ?? []).map((ip) => familyOf(ip.address.split('/')[0]!)))]
}

/** Records `plan` for every family on the chain's netfilter transaction; a refusal is the plugin's error. */
async function planFilter(req: PluginRequest, opts: TransactOptions, plan: (tx: Tx) => void): Promise<void> {
  try {
    await req.netfilter.plan(opts, (txs) => {
      for (const tx of txs.values()) plan(tx)
    })
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
  programs: () => IPTABLES_PROGRAMS,
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
    await planFilter(req, {families: fams, tables: ['filter']}, (tx) => planAdd(tx, conf, prev))
    return prev
  },

  async del(req) {
    const prev = req.config.prevResult
    const fams = familiesOf(prev)
    if (fams.length === 0) return // nothing to identify the rules by (as the reference)
    await planFilter(req, {families: fams, tables: ['filter'], optionalFamilies: [6]}, (tx) => planDel(tx, prev))
  },

  async check(req, conf) {
    const prev = req.config.prevResult
    if (!prev) throw invalid('missing prevResult from earlier plugin')
    const fams = familiesOf(prev)
    if (fams.length === 0) return
    const states = await readStates(fams, ['filter'])
    for (const f of fams) {
      const problem = checkIn(states.get(f)!, conf, prev)
      if (problem) throw new CniError(CNI_ERR.INTERNAL, problem)
    }
  },
}

export default firewall

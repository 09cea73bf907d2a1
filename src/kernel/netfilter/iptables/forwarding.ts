/**
 * Accepted forwarding, as the reference firewall plugin's iptables backend
 * (containernetworking/plugins v1.1.1, plugins/meta/firewall), without and
 * with bridge isolation (the reference's "open" and "same-bridge"), table
 * filter:
 *
 *   FORWARD      -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD        (inserted at 1)
 *   CNI-FORWARD  -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN (inserted at 1)
 *   CNI-FORWARD  -d <ip>/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT       (per IP, appended)
 *   CNI-FORWARD  -s <ip>/32 -j ACCEPT
 * bridge isolation (after the above, for each family with an address):
 *   FORWARD               -m comment --comment "<C>" -j CNI-ISOLATION-STAGE-1          (inserted at 1)
 *   CNI-ISOLATION-STAGE-1 -i <br> ! -o <br> -m comment --comment "<C>" -j CNI-ISOLATION-STAGE-2 (inserted at 1)
 *   CNI-ISOLATION-STAGE-1 -m comment --comment "<C>" -j RETURN                           (appended)
 *   CNI-ISOLATION-STAGE-2 -o <br> -m comment --comment "<C>" -j DROP                     (inserted at 1)
 *   CNI-ISOLATION-STAGE-2 -m comment --comment "<C>" -j RETURN                           (appended)
 *
 * isolated (icc=false), as the reference since v1.7.1 (ingresspolicy.go
 * setupIsolationChains with isolated=true), its comments byte for byte:
 *   FORWARD               -m comment --comment "<D>" -j CNI-ISOLATION-STAGE-1          (inserted at 1)
 *   CNI-ISOLATION-STAGE-1 -i <br> ! -o <br> -m comment --comment "<I>" -j CNI-ISOLATION-STAGE-2 (inserted at 1)
 *   CNI-ISOLATION-STAGE-1 -i <br> -o <br> -m comment --comment "<I>" -j DROP          (inserted at 1)
 *   CNI-ISOLATION-STAGE-1 -m comment --comment "<D>" -j RETURN                           (appended)
 *   CNI-ISOLATION-STAGE-2 -o <br> -m comment --comment "<D>" -j DROP                     (inserted at 1)
 *   CNI-ISOLATION-STAGE-2 -m comment --comment "<D>" -j RETURN                           (appended)
 * with <D> "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)"
 * and <I> "CNI firewall plugin rules (ingressPolicy: isolated)". (same-bridge
 * keeps v1.1.1's one comment <C>, as the plugin ctrnet is tested against.)
 * The `-i <br> -o <br>` DROP sees bridged traffic only with br_netfilter
 * (bridge-nf-call-iptables=1); the firewall plugin also sets the bridge ports
 * isolated, which holds without it (plugins/firewall/index.ts).
 *
 * Removal takes the per-IP rules only. Like the reference, the isolation
 * rules of a bridge are left in place (another container may still use the
 * bridge) and so are the shared chains, so that our DEL after a reference
 * ADD and the reference DEL after ours leave the same tables. `network rm`
 * removes a bridge's rules (removeBridgeRules, with the exposure rules of
 * exposure.ts).
 */
import {familyOf, type Family} from '../../ip/addr.js'
import type {ForwardPolicy, ForwardedContainer} from '../firewall.js'
import {isBridge} from '../../sysfs.js'
import {ifNameFault, showToken} from '../../tokens.js'
import {saveForm} from './format.js'
import {readStates} from './io.js'
import {namesBridge, planExposure, removeExposure, type BridgeExposure} from './exposure.js'
import type {Ruleset, Tx} from './ruleset.js'
import type {NetfilterTx} from './transaction.js'

export const PRIV_CHAIN = 'CNI-FORWARD'
export const STAGE1_CHAIN = 'CNI-ISOLATION-STAGE-1'
export const STAGE2_CHAIN = 'CNI-ISOLATION-STAGE-2'
/** The comment of the isolation rules: the reference's rule text, byte for byte (its config's words, not ours). */
const ISOLATION_COMMENT = 'CNI firewall plugin rules (ingressPolicy: same-bridge)'
/** v1.7.1's comments of ingressPolicy "isolated": the shared rules', and the bridge's own. */
const SHARED_COMMENT = 'CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)'
const ISOLATED_COMMENT = 'CNI firewall plugin rules (ingressPolicy: isolated)'

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

export interface IsolationRules {
  jump: string
  stage1Bridge: string
  /** isolated only: the drop of the traffic between the bridge's containers. */
  stage1Drop?: string
  stage1Return: string
  stage2Bridge: string
  stage2Return: string
}

/** The isolation rules of a bridge: same-bridge (v1.1.1's comment) or isolated (v1.7.1's). */
export function isolationRules(bridge: string, isolated = false): IsolationRules {
  const shared = isolated ? SHARED_COMMENT : ISOLATION_COMMENT
  const own = isolated ? ISOLATED_COMMENT : ISOLATION_COMMENT
  const c = (r: string[], comment = shared) => saveForm([...r, '-m', 'comment', '--comment', comment])
  return {
    jump: c(['-j', STAGE1_CHAIN]),
    stage1Bridge: c(['-i', bridge, '!', '-o', bridge, '-j', STAGE2_CHAIN], own),
    ...(isolated ? {stage1Drop: c(['-i', bridge, '-o', bridge, '-j', 'DROP'], own)} : {}),
    stage1Return: c(['-j', 'RETURN']),
    stage2Bridge: c(['-o', bridge, '-j', 'DROP']),
    stage2Return: c(['-j', 'RETURN']),
  }
}

function ipsOf(c: ForwardedContainer | undefined, family: Family): string[] {
  return (c?.addresses ?? []).filter((a) => familyOf(a.split('/')[0]!) === family)
}

/**
 * iptablesBackend.addRules + setupIngressPolicy for one family; then, when
 * `bridge` says the container's interface is a bridge, the bridge's
 * exposure and accept rules (exposure.ts).
 */
export function planAdd(tx: Tx, policy: ForwardPolicy, c: ForwardedContainer, bridge?: BridgeExposure): void {
  const rules = ipsOf(c, tx.family).flatMap(privChainRules)
  if (rules.length === 0) return
  tx.ensureChain('filter', PRIV_CHAIN)
  tx.ensureChain('filter', policy.adminChain)
  tx.insertUnique('filter', 'FORWARD', filterRule(PRIV_CHAIN))
  tx.insertUnique('filter', PRIV_CHAIN, adminRule(policy.adminChain))
  for (const r of rules) tx.appendUnique('filter', PRIV_CHAIN, r)

  if (policy.isolation !== 'none') {
    const br = c.bridge
    if (!br) throw new Error('unreachable: checked before planning')
    const iso = isolationRules(br, policy.isolation === 'isolated')
    tx.ensureChain('filter', STAGE1_CHAIN)
    tx.ensureChain('filter', STAGE2_CHAIN)
    tx.insertUnique('filter', 'FORWARD', iso.jump)
    tx.insertUnique('filter', STAGE1_CHAIN, iso.stage1Bridge)
    if (iso.stage1Drop) tx.insertUnique('filter', STAGE1_CHAIN, iso.stage1Drop)
    tx.appendUnique('filter', STAGE1_CHAIN, iso.stage1Return)
    tx.insertUnique('filter', STAGE2_CHAIN, iso.stage2Bridge)
    tx.appendUnique('filter', STAGE2_CHAIN, iso.stage2Return)
  }
  if (bridge) planExposure(tx, bridge)
}

/**
 * Every isolation rule of a bridge, whichever plugin and version wrote it
 * (any comment), and its exposure rules, for one family: the shared chains,
 * jumps and RETURNs stay.
 */
export function removeBridgeRules(tx: Tx, bridge: string): void {
  for (const chain of [STAGE1_CHAIN, STAGE2_CHAIN]) {
    for (const r of [...tx.state.rules('filter', chain)]) if (namesBridge(r, bridge)) tx.deleteRule('filter', chain, r)
  }
  removeExposure(tx, bridge)
}

/** iptablesBackend.delRules for one family: the per-IP rules, every copy. */
export function planDel(tx: Tx, c: ForwardedContainer | undefined): void {
  for (const r of ipsOf(c, tx.family).flatMap(privChainRules)) tx.deleteRule('filter', PRIV_CHAIN, r)
}

/** checkRules for one family. Returns the problem or undefined. */
export function checkIn(state: Ruleset, policy: ForwardPolicy, c: ForwardedContainer): string | undefined {
  const rules = ipsOf(c, state.family).flatMap(privChainRules)
  if (rules.length === 0) return undefined
  for (const chain of [PRIV_CHAIN, policy.adminChain]) {
    if (!state.hasChain('filter', chain)) return `chain ${chain} not found in iptables table filter`
  }
  if (!state.hasRule('filter', 'FORWARD', filterRule(PRIV_CHAIN))) return `expected FORWARD rule ${filterRule(PRIV_CHAIN)} not found`
  if (!state.hasRule('filter', PRIV_CHAIN, adminRule(policy.adminChain))) {
    return `expected ${PRIV_CHAIN} rule ${adminRule(policy.adminChain)} not found`
  }
  for (const r of rules) if (!state.hasRule('filter', PRIV_CHAIN, r)) return `expected rule ${r} not found`
  return undefined
}

function familiesOf(c: ForwardedContainer | undefined): Family[] {
  return [...new Set((c?.addresses ?? []).map((a) => familyOf(a.split('/')[0]!)))]
}

/** iptablesBackend.Add for every family the container has an address of, recorded on `nf`. */
export async function acceptForwarding(nf: NetfilterTx, policy: ForwardPolicy, on: ForwardedContainer): Promise<void> {
  const fams = familiesOf(on)
  if (fams.length === 0) return
  // exposure rules only for a real bridge here (interfaces[0] of a macvlan result is the container's)
  const bridge: BridgeExposure | undefined = on.bridge && isBridge(on.bridge) ? {bridge: on.bridge, exposure: policy.exposure} : undefined
  await nf.plan({families: fams, tables: ['filter']}, (txs) => {
    for (const tx of txs.values()) planAdd(tx, policy, on, bridge)
  })
}

/** Every rule of one bridge (removeBridgeRules), both families (IPv6 may be missing), recorded on `nf`. */
export async function removeBridge(nf: NetfilterTx, bridge: string): Promise<void> {
  const fault = ifNameFault(bridge)
  if (fault) throw new Error(`iptables: refused bridge name ${showToken(bridge)} : ${fault}`)
  await nf.plan({families: [4, 6], tables: ['filter'], optionalFamilies: [6]}, (txs) => {
    for (const tx of txs.values()) removeBridgeRules(tx, bridge)
  })
}

/** iptablesBackend.Del for every family the container has an address of (IPv6 may be missing), recorded on `nf`. */
export async function removeForwarding(nf: NetfilterTx, on: ForwardedContainer): Promise<void> {
  const fams = familiesOf(on)
  if (fams.length === 0) return
  await nf.plan({families: fams, tables: ['filter'], optionalFamilies: [6]}, (txs) => {
    for (const tx of txs.values()) planDel(tx, on)
  })
}

/** iptablesBackend.Check for every family the container has an address of (one read, no lock): the first problem. */
export async function checkForwarding(policy: ForwardPolicy, on: ForwardedContainer): Promise<string | undefined> {
  const fams = familiesOf(on)
  if (fams.length === 0) return undefined
  const states = await readStates(fams, ['filter'])
  for (const f of fams) {
    const problem = checkIn(states.get(f)!, policy, on)
    if (problem) return problem
  }
  return undefined
}

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
 * Removal takes the per-IP rules only. Like the reference, the isolation
 * rules of a bridge are left in place (another container may still use the
 * bridge) and so are the shared chains, so that our DEL after a reference
 * ADD and the reference DEL after ours leave the same tables.
 */
import {familyOf, type Family} from '../../ip/addr.js'
import type {ForwardPolicy, ForwardedContainer} from '../firewall.js'
import {saveForm} from './format.js'
import {readStates} from './io.js'
import type {Ruleset, Tx} from './ruleset.js'
import type {NetfilterTx} from './transaction.js'

export const PRIV_CHAIN = 'CNI-FORWARD'
export const STAGE1_CHAIN = 'CNI-ISOLATION-STAGE-1'
export const STAGE2_CHAIN = 'CNI-ISOLATION-STAGE-2'
/** The comment of the isolation rules: the reference's rule text, byte for byte (its config's words, not ours). */
const ISOLATION_COMMENT = 'CNI firewall plugin rules (ingressPolicy: same-bridge)'

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

function ipsOf(c: ForwardedContainer | undefined, family: Family): string[] {
  return (c?.addresses ?? []).filter((a) => familyOf(a.split('/')[0]!) === family)
}

/** iptablesBackend.addRules + setupIngressPolicy for one family. */
export function planAdd(tx: Tx, policy: ForwardPolicy, c: ForwardedContainer): void {
  const rules = ipsOf(c, tx.family).flatMap(privChainRules)
  if (rules.length === 0) return
  tx.ensureChain('filter', PRIV_CHAIN)
  tx.ensureChain('filter', policy.adminChain)
  tx.insertUnique('filter', 'FORWARD', filterRule(PRIV_CHAIN))
  tx.insertUnique('filter', PRIV_CHAIN, adminRule(policy.adminChain))
  for (const r of rules) tx.appendUnique('filter', PRIV_CHAIN, r)

  if (policy.isolation === 'bridge') {
    const bridge = c.bridge
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
  await nf.plan({families: fams, tables: ['filter']}, (txs) => {
    for (const tx of txs.values()) planAdd(tx, policy, on)
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

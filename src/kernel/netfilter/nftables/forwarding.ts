/**
 * Forwarded traffic on nftables: ctrnet's own table. The reference firewall
 * plugin has no nftables mode, so there is no layout to share; this one is
 * keyed by sets, so that a container costs set elements, never rules, and a
 * bridge costs elements too:
 *
 *   table inet ctrnet
 *     set fwd4 (ipv4_addr), fwd6 (ipv6_addr)     the containers whose traffic is accepted
 *     set isolated_bridges (ifname)              bridges of isolation 'bridge' / 'isolated'
 *     set published_bridges (ifname)             bridges of exposure 'published'
 *     set routed_bridges (ifname)                bridges of exposure 'routed'
 *     set bridge_inputs (ifname . ifname)        (in, out) pairs that are inside a bridge:
 *                                                <br> . <br> and <overlay vxlan> . <br>
 *     chain <admin chain>                        the admin's, jumped to first, never touched
 *     chain forward (filter, forward, priority filter - 1), rewritten on ADD:
 *       jump <admin chain>
 *       iifname @isolated_bridges oifname @isolated_bridges iifname . oifname != @bridge_inputs drop
 *       oifname @published_bridges iifname != "ctrnet.*" ct state new ct status & dnat == 0 iifname . oifname != @bridge_inputs drop
 *       then the accepts, each `meta mark set meta mark | 0x10000000 accept` (<mark accept> below):
 *       ip saddr @fwd4 <mark accept> ; ip6 saddr @fwd6 <mark accept>                  the containers' own traffic
 *       ip daddr @fwd4 ct state established,related <mark accept> ; (ip6, @fwd6)     replies
 *       ip daddr @fwd4 ct status dnat <mark accept> ; (ip6, @fwd6)                    published ports
 *       iifname "ctrnet.*" ip daddr @fwd4 <mark accept> ; (ip6, @fwd6)                the overlay's peers
 *       oifname @routed_bridges <mark accept>                                         exposure routed
 *
 * Priority filter - 1: before iptables(-nft)'s FORWARD (priority filter), so
 * that our drops come first. An accept here is not final: a FORWARD chain with
 * policy DROP in another table (iptables) still drops the packet. Hence the
 * mark (FWD_ACCEPT_MARK): each accept ORs it into the packet mark, and where
 * the iptables programs exist one generic rule per family in iptables' filter
 * FORWARD accepts what carries it (./iptables-accept.ts). Docker 29's
 * nftables mode takes the same mark as --bridge-accept-fwmark.
 *
 * Isolation 'isolated' (traffic between the containers of one bridge) is not
 * a forward-hook rule: bridged frames reach the inet forward hook only with
 * br_netfilter. It is the kernel's bridge port isolation (`bridge_slave
 * isolated on`, /sys/class/net/<port>/brport/isolated): isolated ports do not
 * talk to each other, and still reach the bridge itself (the way out, the
 * published ports). It goes with the veth, so nothing needs removing.
 * With br_netfilter calling iptables (bridge-nf-call-iptables=1) the kernel
 * bridges a sibling's DNATed connection port to port, and the isolation
 * drops it: a published port is then not reachable from a sibling on the
 * same icc=false bridge (as Docker's icc=false without its userland proxy).
 */
/*
 * Also: a DNATed connection from another isolated bridge is dropped, as the
 * iptables backend's CNI-ISOLATION stages do.
 *
 * Removal adds then deletes the container's elements in one script (nft 1.0.6
 * has no `destroy`): idempotent, nothing listed. removeBridge lists the table
 * once (network rm) to find the bridge's pairs.
 */
import {readdirSync, writeFileSync} from 'node:fs'
import {familyOf, type Family} from '../../ip/addr.js'
import {ifNameFault} from '../../tokens.js'
import type {ForwardPolicy, ForwardedContainer} from '../firewall.js'
import type {ListedTable} from './io.js'
import {addr, bits, ident, ifname, ifnamePrefix, kw, setRef, type NftScript, type NftWord} from './script.js'

export const FWD_TABLE = 'ctrnet'
export const FWD_CHAIN = 'forward'
const TABLE_COMMENT = 'ctrnet: forwarded traffic of containers (accept, bridge isolation, exposure)'
export const SETS = {
  fwd4: 'fwd4',
  fwd6: 'fwd6',
  isolated: 'isolated_bridges',
  published: 'published_bridges',
  routed: 'routed_bridges',
  inputs: 'bridge_inputs',
} as const

/**
 * The packet mark bit every accept of the forward chain sets (ORed into the
 * mark, never replacing it), so that iptables' FORWARD can accept the packet
 * too (one generic rule, ./iptables-accept.ts). Bit 28: none of Kubernetes'
 * (0x4000 masquerade, 0x8000 drop), the portmap hairpin masquerade's (bit
 * 13, 0x2000), netavark's (0x1000 ct mark, 0x2000), Tailscale's (0xff0000)
 * or Cilium's (0x0f00). A mark set in the forward hook is seen by later
 * forward and postrouting rules only (routing was decided before).
 */
export const FWD_ACCEPT_MARK = 0x10000000

/**
 * The overlay service's VXLAN devices (services/overlay vxlanDevice:
 * ctrnet.<vni>), whose traffic is the network's own (its other hosts): as
 * the iptables backend's OVERLAY_DEVICES.
 */
const OVERLAY_DEVICE_PREFIX = 'ctrnet.'

const setOf = (f: Family) => (f === 4 ? SETS.fwd4 : SETS.fwd6)

function ipsOf(c: ForwardedContainer): Array<[Family, string]> {
  return c.addresses.map((a) => {
    const ip = a.split('/')[0]!
    return [familyOf(ip), ip] as [Family, string]
  })
}

/** The table and its sets (idempotent: also what a removal needs before it adds and deletes elements). */
export function fwdTable(s: NftScript): void {
  s.addTable('inet', FWD_TABLE, TABLE_COMMENT)
  s.addSet('inet', FWD_TABLE, SETS.fwd4, 'ipv4_addr')
  s.addSet('inet', FWD_TABLE, SETS.fwd6, 'ipv6_addr')
  s.addSet('inet', FWD_TABLE, SETS.isolated, 'ifname')
  s.addSet('inet', FWD_TABLE, SETS.published, 'ifname')
  s.addSet('inet', FWD_TABLE, SETS.routed, 'ifname')
  s.addSet('inet', FWD_TABLE, SETS.inputs, 'ifname . ifname')
}

/** The forward chain, rewritten (the only rules of the table). */
export function fwdChain(s: NftScript, adminChain: string): void {
  const T = FWD_TABLE
  const C = FWD_CHAIN
  s.addChain('inet', T, adminChain)
  s.addChain('inet', T, C, {base: {type: 'filter', hook: 'forward', priority: -1}})
  s.flushChain('inet', T, C)
  s.addRule('inet', T, C, [kw('jump'), ident(adminChain)])
  const pair: NftWord[] = [kw('iifname'), kw('.'), kw('oifname'), kw('!='), setRef(SETS.inputs)]
  s.addRule('inet', T, C, [kw('iifname'), setRef(SETS.isolated), kw('oifname'), setRef(SETS.isolated), ...pair, kw('drop')])
  s.addRule('inet', T, C, [
    kw('oifname'), setRef(SETS.published), kw('iifname'), kw('!='), ifnamePrefix(OVERLAY_DEVICE_PREFIX), kw('ct'), kw('state'), kw('new'),
    kw('ct'), kw('status'), kw('&'), kw('dnat'), kw('=='), kw('0'), ...pair, kw('drop'),
  ])
  const accept: NftWord[] = [kw('meta'), kw('mark'), kw('set'), kw('meta'), kw('mark'), kw('|'), bits(FWD_ACCEPT_MARK), kw('accept')]
  const fams = [[kw('ip'), setRef(SETS.fwd4)], [kw('ip6'), setRef(SETS.fwd6)]] as const
  for (const [f, set] of fams) s.addRule('inet', T, C, [f, kw('saddr'), set, ...accept])
  for (const [f, set] of fams) s.addRule('inet', T, C, [f, kw('daddr'), set, kw('ct'), kw('state'), kw('established,related'), ...accept])
  for (const [f, set] of fams) s.addRule('inet', T, C, [f, kw('daddr'), set, kw('ct'), kw('status'), kw('dnat'), ...accept])
  for (const [f, set] of fams) s.addRule('inet', T, C, [kw('iifname'), ifnamePrefix(OVERLAY_DEVICE_PREFIX), f, kw('daddr'), set, ...accept])
  s.addRule('inet', T, C, [kw('oifname'), setRef(SETS.routed), ...accept])
}

/** Why the policy cannot be applied to the container, or undefined. */
export function forwardingFault(policy: ForwardPolicy, on: ForwardedContainer): string | undefined {
  const needsBridge = policy.isolation !== 'none' || policy.exposure === 'published'
  if (needsBridge && !on.bridge) return `isolation ${policy.isolation} and exposure ${policy.exposure} need the container's bridge`
  return undefined
}

/** The elements of one bridge under a policy: the bridge sets and the (in, out) pairs. */
function bridgeElements(policy: ForwardPolicy, on: ForwardedContainer): {isolated: boolean; published: boolean; routed: boolean; pairs: NftWord[][]} {
  const br = on.bridge
  if (!br) return {isolated: false, published: false, routed: false, pairs: []}
  const isolated = policy.isolation !== 'none'
  const published = policy.exposure === 'published'
  const pairs: NftWord[][] = []
  if (isolated || published) pairs.push([ifname(br), ifname(br)])
  if (published) for (const i of on.ingress ?? []) pairs.push([ifname(i), ifname(br)])
  return {isolated, published, routed: policy.exposure === 'routed', pairs}
}

/** Records the acceptance of the container's traffic and its bridge's elements. */
export function planAccept(s: NftScript, policy: ForwardPolicy, on: ForwardedContainer): void {
  const fault = forwardingFault(policy, on)
  if (fault) throw new Error(`nftables: cannot accept the forwarding of ${on.addresses.join(', ')} : ${fault}`)
  fwdTable(s)
  fwdChain(s, policy.adminChain)
  for (const f of [4, 6] as const) {
    const ips = ipsOf(on).filter(([g]) => g === f)
    s.addElements('inet', FWD_TABLE, setOf(f), ips.map(([, ip]) => addr(ip, f)))
  }
  const b = bridgeElements(policy, on)
  if (b.isolated) s.addElements('inet', FWD_TABLE, SETS.isolated, [ifname(on.bridge!)])
  if (b.published) s.addElements('inet', FWD_TABLE, SETS.published, [ifname(on.bridge!)])
  if (b.routed) s.addElements('inet', FWD_TABLE, SETS.routed, [ifname(on.bridge!)])
  s.addElements('inet', FWD_TABLE, SETS.inputs, b.pairs)
}

/** Records the removal of the container's elements (added first: idempotent without a listing). */
export function planRemove(s: NftScript, on: ForwardedContainer): void {
  const ips = ipsOf(on)
  if (ips.length === 0) return
  fwdTable(s)
  for (const f of [4, 6] as const) {
    const words = ips.filter(([g]) => g === f).map(([, ip]) => addr(ip, f))
    s.addElements('inet', FWD_TABLE, setOf(f), words)
    s.deleteElements('inet', FWD_TABLE, setOf(f), words)
  }
}

/** Records the removal of one bridge's elements found in the listed table. */
export function planRemoveBridge(s: NftScript, listed: ListedTable | undefined, bridge: string): void {
  if (!listed) return
  const q = `"${bridge}"`
  const has = (set: string, el: string) => (listed.sets.get(set) ?? []).some((e) => e === el || e === bridge || e === q)
  const br = ifname(bridge)
  if (has(SETS.isolated, bridge)) s.deleteElements('inet', FWD_TABLE, SETS.isolated, [br])
  if (has(SETS.published, bridge)) s.deleteElements('inet', FWD_TABLE, SETS.published, [br])
  if (has(SETS.routed, bridge)) s.deleteElements('inet', FWD_TABLE, SETS.routed, [br])
  const pairs = (listed.sets.get(SETS.inputs) ?? []).map((e) => e.split(' . ').map((x) => x.replace(/^"|"$/g, '')))
  const mine = pairs.filter((p) => p.length === 2 && p[1] === bridge && ifNameFault(p[0]) === undefined)
  if (mine.length) s.deleteElements('inet', FWD_TABLE, SETS.inputs, mine.map(([i]) => [ifname(i!), br]))
}

/**
 * True when the listed table holds nothing once `bridge` is gone: no
 * container address and no bridge element of another bridge (the generic
 * iptables accept is then no longer needed).
 */
export function emptyWithout(listed: ListedTable | undefined, bridge: string): boolean {
  if (!listed) return true
  const unq = (e: string) => e.replace(/^"|"$/g, '')
  for (const [name, els] of listed.sets) {
    if (name === SETS.inputs) {
      if (els.some((e) => unq(e.split(' . ')[1] ?? '') !== bridge)) return false
    } else if (name === SETS.fwd4 || name === SETS.fwd6) {
      if (els.length) return false
    } else if (els.some((e) => unq(e) !== bridge)) return false
  }
  return true
}

/** CHECK: the chain, the container's elements and its bridge's. */
export function checkIn(listed: ListedTable | undefined, policy: ForwardPolicy, on: ForwardedContainer): string | undefined {
  if (!listed) return `table inet ${FWD_TABLE} not found`
  for (const chain of [FWD_CHAIN, policy.adminChain]) if (!listed.chains.has(chain)) return `chain ${chain} not found in table inet ${FWD_TABLE}`
  for (const [f, ip] of ipsOf(on)) {
    const want = addr(ip, f).text
    if (!(listed.sets.get(setOf(f)) ?? []).includes(want)) return `${ip} not found in set ${setOf(f)} of table inet ${FWD_TABLE}`
  }
  const b = bridgeElements(policy, on)
  if (b.isolated && !(listed.sets.get(SETS.isolated) ?? []).includes(on.bridge!)) return `bridge ${on.bridge} not found in set ${SETS.isolated}`
  if (b.published && !(listed.sets.get(SETS.published) ?? []).includes(on.bridge!)) return `bridge ${on.bridge} not found in set ${SETS.published}`
  if (b.routed && !(listed.sets.get(SETS.routed) ?? []).includes(on.bridge!)) return `bridge ${on.bridge} not found in set ${SETS.routed}`
  return undefined
}

/**
 * Isolation 'isolated': sets the bridge port isolation flag on the
 * container's port (or, not given, every port of the bridge). No process:
 * sysfs of the current network namespace.
 */
export function isolatePorts(bridge: string, port?: string): void {
  for (const p of [bridge, ...(port ? [port] : [])]) {
    const f = ifNameFault(p)
    if (f) throw new Error(`nftables: cannot isolate the ports of ${JSON.stringify(bridge)} : interface name ${JSON.stringify(p)} ${f}`)
  }
  let ports: string[]
  try {
    ports = port ? [port] : readdirSync(`/sys/class/net/${bridge}/brif`)
  } catch {
    throw new Error(`nftables: cannot isolate the ports of ${bridge} : no such bridge`)
  }
  for (const p of ports) {
    if (ifNameFault(p)) continue
    try {
      writeFileSync(`/sys/class/net/${p}/brport/isolated`, '1')
    } catch (err) {
      throw new Error(`nftables: cannot isolate bridge port ${p} of ${bridge} : ${(err as Error).message}`)
    }
  }
}

/**
 * ctrnet's own per-bridge forwarding rules, table filter (the reference
 * plugins have none of them): what reaches a bridge's containers from outside
 * the host, and the accepts that let a bridge work under a FORWARD policy
 * DROP. Keyed by bridge, never by container: installed idempotently at each
 * ADD (forwarding.ts planAdd) and removed only with the bridge
 * (removeExposure, for `network rm`), so a reference DEL after our ADD leaves
 * nothing of a container behind.
 *
 *   FORWARD        -m comment --comment "ctrnet exposure" -j CTRNET-FORWARD          (inserted at 1)
 *   CTRNET-FORWARD -i <br> -j RETURN                   (every bridge: traffic from a bridge is its isolation's business; inserted at 1)
 *   CTRNET-FORWARD -i ctrnet.+ -j RETURN               (shared: the overlay's VXLAN devices; inserted at 1)
 *   CTRNET-FORWARD -o <br> -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT
 *                  -m comment --comment "ctrnet: published ports only" -j DROP       (exposure published; appended)
 *   FORWARD        -m comment --comment "ctrnet accepts" -j CTRNET-ACCEPT            (appended)
 *   CTRNET-ACCEPT  -i <br> -j ACCEPT                   (the containers' own traffic: out, and to each other as isolation let it)
 *   CTRNET-ACCEPT  -o <br> -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT  (replies, published ports)
 *   CTRNET-ACCEPT  -i ctrnet.+ -o <br> -j ACCEPT       (the overlay's peers)
 *   CTRNET-ACCEPT  -o <br> -j ACCEPT                   (exposure routed)
 *
 * CTRNET-FORWARD only drops or returns, so it may come first in FORWARD: a
 * new connection that arrives on an interface that is neither one of
 * ctrnet's bridges nor an overlay device (a neighbour routing the subnet via
 * this host) reaches the containers only through a published port (conntrack
 * DNAT, portmap's). Replies, the containers' own connections, the host's own
 * traffic (OUTPUT, never FORWARD) and bridge-to-bridge traffic (decided by
 * the isolation rules, which run after) are left alone. CTRNET-ACCEPT is
 * appended, after the isolation rules and the admin's chain, and only
 * accepts: it matters only where FORWARD's policy is DROP, which is never
 * changed. The overlay devices are named by the overlay service
 * (services/overlay/config.ts vxlanDevice: ctrnet.<vni>).
 */
import {saveForm, splitSaveLine} from './format.js'
import type {Tx} from './ruleset.js'

export const EXPOSURE_CHAIN = 'CTRNET-FORWARD'
export const ACCEPT_CHAIN = 'CTRNET-ACCEPT'
/** The overlay service's VXLAN devices, as an iptables interface wildcard. */
export const OVERLAY_DEVICES = 'ctrnet.+'

/** One bridge's exposure: what it is planned with. */
export interface BridgeExposure {
  bridge: string
  exposure: 'published' | 'routed'
}

export const exposureJump = (): string => saveForm(['-m', 'comment', '--comment', 'ctrnet exposure', '-j', EXPOSURE_CHAIN])
export const acceptJump = (): string => saveForm(['-m', 'comment', '--comment', 'ctrnet accepts', '-j', ACCEPT_CHAIN])
export const overlayReturn = (): string => saveForm(['-i', OVERLAY_DEVICES, '-j', 'RETURN'])

/** The rules of one bridge, in save form. */
export function exposureRules(bridge: string): {inside: string; published: string; own: string; replies: string; overlay: string; routed: string} {
  return {
    inside: saveForm(['-i', bridge, '-j', 'RETURN']),
    published: saveForm([
      '-o', bridge, '-m', 'conntrack', '!', '--ctstate', 'RELATED,ESTABLISHED,DNAT',
      '-m', 'comment', '--comment', 'ctrnet: published ports only', '-j', 'DROP',
    ]),
    own: saveForm(['-i', bridge, '-j', 'ACCEPT']),
    replies: saveForm(['-o', bridge, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED,DNAT', '-j', 'ACCEPT']),
    overlay: saveForm(['-i', OVERLAY_DEVICES, '-o', bridge, '-j', 'ACCEPT']),
    routed: saveForm(['-o', bridge, '-j', 'ACCEPT']),
  }
}

/** Installs one bridge's rules for one family (idempotent; the other exposure's rule goes). */
export function planExposure(tx: Tx, b: BridgeExposure): void {
  const r = exposureRules(b.bridge)
  tx.ensureChain('filter', EXPOSURE_CHAIN)
  tx.ensureChain('filter', ACCEPT_CHAIN)
  tx.insertUnique('filter', 'FORWARD', exposureJump())
  tx.appendUnique('filter', 'FORWARD', acceptJump())
  tx.insertUnique('filter', EXPOSURE_CHAIN, overlayReturn())
  tx.insertUnique('filter', EXPOSURE_CHAIN, r.inside)
  if (b.exposure === 'published') tx.appendUnique('filter', EXPOSURE_CHAIN, r.published)
  else tx.deleteRule('filter', EXPOSURE_CHAIN, r.published)
  tx.appendUnique('filter', ACCEPT_CHAIN, r.own)
  tx.appendUnique('filter', ACCEPT_CHAIN, r.replies)
  tx.appendUnique('filter', ACCEPT_CHAIN, r.overlay)
  if (b.exposure === 'routed') tx.appendUnique('filter', ACCEPT_CHAIN, r.routed)
  else tx.deleteRule('filter', ACCEPT_CHAIN, r.routed)
}

/** True when `rule` (save form) names `bridge` as its in or out interface. */
export function namesBridge(rule: string, bridge: string): boolean {
  const t = splitSaveLine(rule)
  return t.some((tok, i) => (tok === '-i' || tok === '-o') && t[i + 1] === bridge)
}

/** Removes every rule of ctrnet's chains that names the bridge, for one family (the chains and jumps stay). */
export function removeExposure(tx: Tx, bridge: string): void {
  for (const chain of [EXPOSURE_CHAIN, ACCEPT_CHAIN]) {
    for (const r of [...tx.state.rules('filter', chain)]) if (namesBridge(r, bridge)) tx.deleteRule('filter', chain, r)
  }
}

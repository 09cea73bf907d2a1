/**
 * The network-name rule (libcni's): letters, digits, '_', '.' and '-', not
 * starting with one of the last three. A network's name names files (its
 * conflist, its leases, the overlay's state) and appears in iptables comments,
 * so every layer that takes one from outside checks it with this rule.
 * nerdctl's `network create` also wants two characters at least
 * (netconf/names.ts).
 */
export const NETWORK_NAME_RULE = '^[a-zA-Z0-9][a-zA-Z0-9_.-]*$'
const NETWORK_NAME_RE = new RegExp(NETWORK_NAME_RULE)

export function isNetworkName(v: unknown): v is string {
  return typeof v === 'string' && NETWORK_NAME_RE.test(v)
}

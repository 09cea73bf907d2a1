/**
 * The firewall backends ctrnet has, and the one place that picks one: the
 * runtime opens each chain's transaction here and the plugin registry asks
 * here which programs a chain needs. A new backend (nftables) is one more
 * folder beside iptables/ implementing FirewallBackend, and one more line in
 * BACKENDS.
 */
import type {FirewallBackend} from '../firewall.js'
import {chainFault, iptablesBackend} from '../iptables/index.js'

const BACKENDS = {iptables: iptablesBackend} as const satisfies Record<string, FirewallBackend>

export type FirewallBackendName = keyof typeof BACKENDS

/** The backend every chain uses. */
export const DEFAULT_FIREWALL_BACKEND: FirewallBackendName = 'iptables'

export function firewallBackend(name: FirewallBackendName = DEFAULT_FIREWALL_BACKEND): FirewallBackend {
  return BACKENDS[name]
}

/**
 * Why a value cannot name an iptables chain (the plugin options that do:
 * the firewall plugin's admin chain, portmap's external mark chain), or
 * undefined: the iptables backend's own rule.
 */
export const iptablesChainFault: (name: unknown) => string | undefined = chainFault

/**
 * The firewall backends ctrnet has, and the one place that picks one: the
 * runtime opens each chain's transactions here (one per backend the chain's
 * plugins use) and asks here which programs a backend runs. A backend is one
 * folder beside iptables/ implementing FirewallBackend, and one line in
 * BACKENDS.
 *
 * Which backend a plugin uses is its config's choice, in the reference
 * plugins' own fields (bridge `ipMasqBackend`, portmap `backend`, CNI plugins
 * >= 1.6); a config that names none gets the reference's rule,
 * defaultFirewallBackend() below.
 */
import type {FirewallBackend} from '../firewall.js'
import {chainFault, iptablesBackend} from '../iptables/index.js'
import {nftablesBackend} from '../nftables/index.js'
import {haveProgram} from '../../../sys/exec.js'

const BACKENDS = {iptables: iptablesBackend, nftables: nftablesBackend} as const satisfies Record<string, FirewallBackend>

export type FirewallBackendName = keyof typeof BACKENDS

/** Every backend, in the order a chain commits its transactions. */
export const FIREWALL_BACKENDS: readonly FirewallBackendName[] = ['iptables', 'nftables']

/** The backend preferred where it can run (the reference plugins' preference). */
export const DEFAULT_FIREWALL_BACKEND: FirewallBackendName = 'iptables'

export function isFirewallBackendName(v: unknown): v is FirewallBackendName {
  return typeof v === 'string' && Object.hasOwn(BACKENDS, v)
}

export function firewallBackend(name: FirewallBackendName = DEFAULT_FIREWALL_BACKEND): FirewallBackend {
  return BACKENDS[name]
}

/** Whether a program is installed (sys/exec.ts haveProgram; tests hand in their own). */
export type ProgramLookup = (program: string) => boolean

/**
 * The programs whose presence says a backend is installed on the host (any
 * one of them): the reference probes the `iptables` and `nft` commands.
 */
const INSTALLED_BY: Readonly<Record<FirewallBackendName, readonly string[]>> = {
  iptables: ['iptables-save', 'iptables-restore'],
  nftables: ['nft'],
}

/** Whether a backend is installed on this host (one of INSTALLED_BY's programs is). */
export function backendInstalled(name: FirewallBackendName, has: ProgramLookup = (p) => haveProgram(p)): boolean {
  return INSTALLED_BY[name].some((p) => has(p))
}

/**
 * The backend of a config that names none: the reference plugins' rule
 * (pkg/ip SetupIPMasqForNetworks, portmap ensureBackend): nftables only when
 * iptables cannot be used and nftables can; iptables otherwise. "Can be
 * used" is read as "is installed" (the reference runs `iptables -t filter
 * -L INPUT` and `nft --check`): a host without iptables-save and
 * iptables-restore but with nft gets nftables. A host with only one of the
 * two, or with neither backend, gets iptables, whose missing program the
 * runtime then names (a broken install is reported, not worked around).
 */
export function defaultFirewallBackend(has: ProgramLookup = (p) => haveProgram(p)): FirewallBackendName {
  return !backendInstalled('iptables', has) && backendInstalled('nftables', has) ? 'nftables' : 'iptables'
}

/**
 * Why a value cannot name an iptables chain (the plugin options that do:
 * the firewall plugin's admin chain, portmap's external mark chain), or
 * undefined: the iptables backend's own rule.
 */
export const iptablesChainFault: (name: unknown) => string | undefined = chainFault

/**
 * The iptables backend, whole: what backends/index.ts plugs into the firewall seam,
 * and the parts tests, benchmarks and tools use directly. Files:
 *   rules.ts        token checks (UnsafeTokenError), chain name faults
 *   format.ts       save-form text: saveForm, escaping, normalisation
 *   ruleset.ts      the parsed iptables-save model and the Tx simulation
 *   io.ts           iptables-save / iptables-restore processes, the lock, iptablesStats
 *   transaction.ts  NetfilterTx: plan under the lock, commit once
 *   masquerade.ts   CNI-<hash> masquerade chains (bridge's masquerade, overlay)
 *   portmap.ts      CNI-HOSTPORT-* and CNI-DN-<hash> (published ports)
 *   forwarding.ts   CNI-FORWARD, CNI-ADMIN, CNI-ISOLATION-STAGE-1/2 (firewall)
 *   exposure.ts     CTRNET-FORWARD, CTRNET-ACCEPT (per bridge: published ports only, FORWARD DROP)
 *   backend.ts      the seam's FirewallTx on top of them
 */
export {IptablesFirewall, iptablesBackend} from './backend.js'
export {MAX_CHAIN, assertChainName, chainFault} from './rules.js'
export {normalizeCidr, saveForm, saveString, splitSaveLine} from './format.js'
export {Ruleset, Tx, isBuiltinChain, type ChainState} from './ruleset.js'
export {DEFAULT_LOCK_PATH, IPTABLES_PROGRAMS, iptablesStats, readRuleset, readStates} from './io.js'
export {NetfilterTx, type TransactOptions} from './transaction.js'
export * from './masquerade.js'
export * from './portmap.js'
export * from './forwarding.js'
export * from './exposure.js'

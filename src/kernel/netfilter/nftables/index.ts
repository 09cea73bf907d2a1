/**
 * The nftables backend, whole: what backends/index.ts plugs into the firewall
 * seam, and the parts tests and tools use directly. Files:
 *   script.ts      the typed writer of `nft -f -` scripts (refuses what it cannot encode)
 *   io.ts          nft processes: apply a script, list a table as JSON; the lock; nftStats
 *   masquerade.ts  inet cni_plugins_masquerade (the reference ipMasq layout)
 *   portmap.ts     ip/ip6 cni_hostport (the reference portmap layout)
 *   forwarding.ts  inet ctrnet: accept, bridge isolation, exposure (ctrnet's own)
 *   iptables-accept.ts  the generic iptables FORWARD accept of inet ctrnet's mark (iptables policy DROP)
 *   backend.ts     the seam's FirewallTx: record, then one nft per commit
 */
export {NftablesFirewall, nftablesBackend} from './backend.js'
export {DEFAULT_NFT_LOCK_PATH, NFT_PROGRAMS, nftApply, nftListTable, nftStats, parseListing, type ListedRule, type ListedTable} from './io.js'
export * as nftScript from './script.js'
export {MASQ_CHAIN, MASQ_TABLE, hash16, masqComment, masqPrefix} from './masquerade.js'
export {CONTAINER_CHAINS, HOSTPORT_TABLE, HOSTPORTS, MASQUERADING} from './portmap.js'
export {FWD_ACCEPT_MARK, FWD_CHAIN, FWD_TABLE, SETS} from './forwarding.js'
export {IPTABLES_ACCEPT_COMMENT, IPTABLES_ACCEPT_RULE, STATE_TTL_MS, acceptStatePath} from './iptables-accept.js'

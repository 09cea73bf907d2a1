import {normalizeMac} from '../ip/link.js'
import {nftApply, nftBaseChain, nftJson, nftQuoted, nftToken, type NftCmd} from './nft.js'

/**
 * The bridge plugin's MAC spoof check, as the reference's
 * (pkg/link/spoofcheck.go v1.1.1): table bridge nat, base chain PREROUTING
 * (filter, prerouting, priority -300), per attachment chains
 * cni-br-iface-<cid>-<ifname>[-mac]: only the container's MAC may leave its
 * veth. One nft transaction (the reference needs two). The rule comment
 * "macspoofchk-<cid>-<ifname>" is the reference's rule text, byte for byte.
 */
function spoofNames(containerId: string, ifName: string) {
  const ref = `${nftToken(containerId)}-${nftToken(ifName)}`
  const iface = `cni-br-iface-${ref}`
  return {iface, mac: `${iface}-mac`, comment: `macspoofchk-${ref}`}
}

/** The nft script that lets only `mac` leave `hostVeth` (pure: rendered and checked by nftApply). */
export function spoofCheckScript(hostVeth: string, mac: string, containerId: string, ifName: string): NftCmd[] {
  const c = spoofNames(containerId, ifName)
  const comment = nftQuoted(c.comment)
  return [
    ['add', 'table', 'bridge', 'nat'],
    ['add', 'chain', 'bridge', 'nat', 'PREROUTING', nftBaseChain('filter', 'prerouting', -300, 'accept')],
    ['add', 'chain', 'bridge', 'nat', c.iface],
    ['add', 'chain', 'bridge', 'nat', c.mac],
    ['flush', 'chain', 'bridge', 'nat', c.iface],
    ['flush', 'chain', 'bridge', 'nat', c.mac],
    ['add', 'rule', 'bridge', 'nat', 'PREROUTING', 'iifname', nftQuoted(hostVeth), 'jump', c.iface, 'comment', comment],
    ['add', 'rule', 'bridge', 'nat', c.iface, 'jump', c.mac, 'comment', comment],
    ['add', 'rule', 'bridge', 'nat', c.mac, 'ether', 'saddr', normalizeMac(mac), 'return', 'comment', comment],
    ['add', 'rule', 'bridge', 'nat', c.mac, 'drop', 'comment', comment],
  ]
}

/** Installs the spoof check (one `nft -f -`); throws "failed to setup spoof-check: <nft's error>". */
export async function spoofCheckSetup(hostVeth: string, mac: string, containerId: string, ifName: string): Promise<void> {
  const r = await nftApply(spoofCheckScript(hostVeth, mac, containerId, ifName), {allowFailure: true})
  if (r.code !== 0) throw new Error(`failed to setup spoof-check: ${r.stderr.trim()}`)
}

/** Removes the attachment's rules and chains; missing ones are fine. */
export async function spoofCheckTeardown(containerId: string, ifName: string): Promise<void> {
  const c = spoofNames(containerId, ifName)
  const items = (await nftJson(['list', 'chain', 'bridge', 'nat', 'PREROUTING'])) as Array<{rule?: {handle: number; comment?: string}}>
  const lines: NftCmd[] = []
  for (const it of items) {
    if (it.rule && it.rule.comment === c.comment) lines.push(['delete', 'rule', 'bridge', 'nat', 'PREROUTING', 'handle', Number(it.rule.handle)])
  }
  const chains: NftCmd[] = [['delete', 'chain', 'bridge', 'nat', c.iface], ['delete', 'chain', 'bridge', 'nat', c.mac]]
  if (lines.length) await nftApply(lines, {allowFailure: true})
  await nftApply(chains, {allowFailure: true})
}

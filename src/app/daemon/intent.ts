import {Address4, Address6} from 'ip-address'
import * as validate from '../../libcni/validate.js'
import type {NetworkIntent} from '../../libcni/validate.js'
import {errorMessage} from '../../sys/errors.js'

/**
 * A container's network intent, read from its labels (any containerd client
 * may write them, so they go through libcni/validate like every input):
 * - `ctrnet/networks`: `net1,net2`, or a JSON list of
 *   {network, publish, ip, ip6, ifname, aliases};
 * - `ctrnet/publish`: port specs, comma-separated, for the first network.
 */
export const CTRNET_NETWORKS_LABEL = 'ctrnet/networks'
export const CTRNET_PUBLISH_LABEL = 'ctrnet/publish'

export type Intent = {networks: NetworkIntent[]} | {refused: string}

/**
 * The intent of a container: undefined when it has no `ctrnet/networks`
 * label (its networks are not the daemon's business), `{refused}` with one
 * line saying why when a label does not parse; never throws.
 */
export function intentOf(labels: Record<string, string> | undefined): Intent | undefined {
  const raw = labels?.[CTRNET_NETWORKS_LABEL]
  if (raw === undefined) return undefined
  try {
    const networks = validate.networksLabel(raw, `label ${CTRNET_NETWORKS_LABEL}`)
    const publish = validate.publishLabel(labels?.[CTRNET_PUBLISH_LABEL] ?? '', `label ${CTRNET_PUBLISH_LABEL}`)
    if (publish.length > 0) {
      if (networks.length === 0) return {refused: `label ${CTRNET_PUBLISH_LABEL} : is set, but label ${CTRNET_NETWORKS_LABEL} names no network`}
      networks[0] = {...networks[0]!, publish: [...networks[0]!.publish, ...publish]}
    }
    const names = new Set<string>()
    for (const [i, n] of networks.entries()) {
      // the same families `network connect` takes for --ip and --ip6
      if (n.ip !== undefined && !Address4.isValid(n.ip)) return {refused: `label ${CTRNET_NETWORKS_LABEL}[${i}].ip : ${n.ip} is not an IPv4 address`}
      if (n.ip6 !== undefined && !Address6.isValid(n.ip6)) return {refused: `label ${CTRNET_NETWORKS_LABEL}[${i}].ip6 : ${n.ip6} is not an IPv6 address`}
      if (names.has(n.network)) return {refused: `label ${CTRNET_NETWORKS_LABEL} : names network ${n.network} twice`}
      names.add(n.network)
    }
    return {networks}
  } catch (err) {
    return {refused: errorMessage(err).replace(/\s*\n\s*/g, ' ')}
  }
}

/** What `network connect` records of itself in `ctrnet/networks` (its flags as given). */
export interface IntentEntry {
  network: string
  publish?: string[]
  ip?: string
  ip6?: string
  ifname?: string
  aliases?: string[]
}

/** The entries of a label that parses (validate it first), as written: names, or JSON values. */
function rawEntries(current: string): unknown[] {
  const s = current.trim()
  if (s === '') return []
  if (s.startsWith('[')) return JSON.parse(s) as unknown[]
  return s.split(',').map((n) => n.trim())
}

const entryNetwork = (e: unknown) => (typeof e === 'string' ? e : (e as {network?: unknown}).network)

/**
 * `ctrnet/networks` with `entry` added, in the JSON form; an entry of the
 * same network is replaced, the others are kept as they were written. The
 * current value must parse (intentOf).
 */
export function addToNetworksLabel(current: string | undefined, entry: IntentEntry): string {
  const kept = rawEntries(current ?? '').filter((e) => entryNetwork(e) !== entry.network)
  const e: Record<string, unknown> = {network: entry.network}
  if (entry.publish?.length) e.publish = entry.publish
  if (entry.ip !== undefined) e.ip = entry.ip
  if (entry.ip6 !== undefined) e.ip6 = entry.ip6
  if (entry.ifname !== undefined) e.ifname = entry.ifname
  if (entry.aliases?.length) e.aliases = entry.aliases
  return JSON.stringify([...kept, e])
}

/**
 * `ctrnet/networks` without `network`: undefined when the label does not
 * name it (or does not parse); value undefined when nothing is left; first
 * when it was the first entry (the one `ctrnet/publish` belongs to).
 */
export function removeFromNetworksLabel(current: string | undefined, network: string): {value: string | undefined; first: boolean} | undefined {
  if (current === undefined) return undefined
  const parsed = intentOf({[CTRNET_NETWORKS_LABEL]: current})
  if (!parsed || !('networks' in parsed)) return undefined
  const entries = rawEntries(current)
  const at = entries.findIndex((e) => entryNetwork(e) === network)
  if (at < 0) return undefined
  const left = entries.filter((_, i) => i !== at)
  const json = current.trim().startsWith('[')
  const value = left.length === 0 ? undefined : json ? JSON.stringify(left) : (left as string[]).join(',')
  return {value, first: at === 0}
}

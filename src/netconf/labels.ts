import {Address4, Address6} from 'ip-address'
import * as validate from '../libcni/validate.js'
import * as fields from '../plugins/fields.js'
import {given, list, obj, refuse} from '../plugins/fields.js'
import {errorMessage} from '../sys/errors.js'
import {type AttachRequest, formatPortSpec} from './attach-request.js'

/**
 * Every container label ctrnet reads or writes, and the one conflist label
 * it reads: the keys, their parsers and their formatters. A label is an
 * input like any other (any containerd client may write one): parsed into
 * typed values here, refused in one line that names it.
 */

// ---- the keys -------------------------------------------------------------

/** nerdctl's (pkg/labels/labels.go): the container's name. */
export const NAME_LABEL = 'nerdctl/name'
/** nerdctl's: the networks of a container, a JSON list of names. */
export const NETWORKS_LABEL = 'nerdctl/networks'
/** nerdctl's: the hostname, an OCI annotation of the container's spec. */
export const HOSTNAME_LABEL = 'nerdctl/hostname'
/** nerdctl's label of a conflist (nerdctlLabels) that marks it as the default network. */
export const DEFAULT_NETWORK_LABEL = 'nerdctl/default-network'
/** ctrnet's: the networks the daemon keeps a container attached to, `net1,net2` or a JSON list of {network, publish, ip, ip6, ifname, aliases}. */
export const CTRNET_NETWORKS_LABEL = 'ctrnet/networks'
/** ctrnet's: port specs, comma-separated, for the first network of `ctrnet/networks`. */
export const CTRNET_PUBLISH_LABEL = 'ctrnet/publish'

// ---- nerdctl/networks -----------------------------------------------------

/**
 * The `nerdctl/networks` label: a JSON array of network names (Go's
 * json.Marshal of []string). Missing -> []. Unparsable -> undefined.
 */
export function parseNetworksLabel(labels: Record<string, string> | undefined): string[] | undefined {
  const raw = labels?.[NETWORKS_LABEL]
  if (raw === undefined || raw === '') return []
  try {
    const v = JSON.parse(raw) as unknown
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v
  } catch {
    /* fall through */
  }
  return undefined
}

/** Go's json.Marshal of []string (network names never need Go's HTML escapes). */
export function formatNetworksLabel(nets: string[]): string {
  return JSON.stringify(nets)
}

/** nerdctl's nettype: only a list of plain names is a CNI attachment list. */
export function isCniNetworkList(nets: string[]): boolean {
  return nets.length > 0 && nets.every((n) => n !== 'host' && n !== 'none' && !n.startsWith('container:') && !n.startsWith('ns:'))
}

// ---- ctrnet/networks and ctrnet/publish: parse ------------------------------

/**
 * Spaces and tabs around a label's items: what a person types. Not trim(),
 * which also eats U+2028, NBSP, U+3000...: a value the CLI refuses must not
 * pass as a label.
 */
const blanksTrimmed = (s: string) => s.replace(/^[ \t]+|[ \t]+$/g, '')

/** Label `ctrnet/publish`: comma-separated port specs. */
export function publishLabel(v: string, field = `label ${CTRNET_PUBLISH_LABEL}`) {
  if (blanksTrimmed(v) === '') return []
  return v.split(',').map((s) => validate.portSpec(blanksTrimmed(s), field))
}

const FIELDS = ['network', 'publish', 'ip', 'ip6', 'ifname', 'aliases']

/** Label `ctrnet/networks`: `net1,net2` or a JSON list of {network, publish, ip, ip6, ifname, aliases}. */
export function networksLabel(v: string, field = `label ${CTRNET_NETWORKS_LABEL}`): AttachRequest[] {
  const s = blanksTrimmed(v)
  if (s === '') return []
  if (!s.startsWith('[')) return s.split(',').map((n) => ({network: fields.networkName(blanksTrimmed(n), field), publish: [], aliases: []}))
  let raw: unknown
  try {
    raw = JSON.parse(s)
  } catch {
    return refuse(field, 'is neither a comma-separated list of networks nor a JSON list')
  }
  return list(raw, field).map((e, i) => {
    const f = `${field}[${i}]`
    const o = obj(typeof e === 'string' ? {network: e} : e, f)
    for (const k of Object.keys(o)) if (!FIELDS.includes(k)) refuse(`${f}.${k}`, `is not a known field (${FIELDS.join(', ')})`)
    const req: AttachRequest = {
      network: fields.networkName(o.network, `${f}.network`),
      publish: given(o.publish) ? list(o.publish, `${f}.publish`).map((p, j) => validate.portSpec(p as string, `${f}.publish[${j}]`)) : [],
      aliases: given(o.aliases) ? list(o.aliases, `${f}.aliases`).map((a, j) => fields.dnsName(a, `${f}.aliases[${j}]`)) : [],
    }
    if (given(o.ip)) req.ip = fields.ipAddress(o.ip, `${f}.ip`)
    if (given(o.ip6)) req.ip6 = fields.ipAddress(o.ip6, `${f}.ip6`)
    if (given(o.ifname)) req.ifname = fields.ifName(o.ifname, `${f}.ifname`)
    return req
  })
}

/** What a container's ctrnet labels ask for, or why they cannot be followed. */
export type Intent = {networks: AttachRequest[]} | {refused: string}

/**
 * The intent of a container: undefined when it has no `ctrnet/networks`
 * label (its networks are not the daemon's business), `{refused}` with one
 * line saying why when a label does not parse; never throws.
 */
export function intentOf(labels: Record<string, string> | undefined): Intent | undefined {
  const raw = labels?.[CTRNET_NETWORKS_LABEL]
  if (raw === undefined) return undefined
  try {
    const networks = networksLabel(raw)
    const publish = publishLabel(labels?.[CTRNET_PUBLISH_LABEL] ?? '')
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

// ---- ctrnet/networks: format ------------------------------------------------

/** The entries of a label that parses (validate it first), as written: names, or JSON values. */
function rawEntries(current: string): unknown[] {
  const s = current.trim()
  if (s === '') return []
  if (s.startsWith('[')) return JSON.parse(s) as unknown[]
  return s.split(',').map((n) => n.trim())
}

const entryNetwork = (e: unknown) => (typeof e === 'string' ? e : (e as {network?: unknown}).network)

/**
 * `ctrnet/networks` with `req` added (what `network connect` records of
 * itself), in the JSON form; an entry of the same network is replaced, the
 * others are kept as they were written. The current value must parse
 * (intentOf).
 */
export function addToNetworksLabel(current: string | undefined, req: Pick<AttachRequest, 'network'> & Partial<AttachRequest>): string {
  const kept = rawEntries(current ?? '').filter((e) => entryNetwork(e) !== req.network)
  const e: Record<string, unknown> = {network: req.network}
  if (req.publish?.length) e.publish = req.publish.map(formatPortSpec)
  if (req.ip !== undefined) e.ip = req.ip
  if (req.ip6 !== undefined) e.ip6 = req.ip6
  if (req.ifname !== undefined) e.ifname = req.ifname
  if (req.aliases?.length) e.aliases = req.aliases
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

import {randomInt} from 'node:crypto'
import {type Cidr, cidrContains, formatCidr, networkOf, parseCidr, parseIp, sliceCount, subnetAt} from '../../kernel/ip/addr.js'
import {normalizeMac} from '../../kernel/ip/link.js'
import {EtcdClient, EtcdError, type KeyValue} from '../../sys/etcd.js'

/**
 * Host slices of an overlay network in etcd (flannel's subnet leases, over
 * etcd v3):
 *
 *   /ctrnet/overlay/<vni>/config                 {"subnet":"10.200.0.0/16","hostSubnetSize":24}
 *   /ctrnet/overlay/<vni>/subnets/10.200.3.0-24  {"publicIp":"192.168.250.2","vtepMac":"..."}
 *
 * A subnet key is attached to an etcd lease of the network's TTL: it goes
 * away by itself when its host stops renewing. A host takes a free slice
 * with a transaction that succeeds only if the key was never created (so two
 * hosts never hold one slice) and finds its own slice again by its underlay
 * address (flannel's PublicIP), or failing that tries the slice it last held.
 */

export interface SliceRecord {
  slice: Cidr
  publicIp: string
  vtepMac: string
  /** etcd lease id of the key */
  lease: string
}

export function networkPrefix(vni: number): string {
  return `/ctrnet/overlay/${vni}/`
}

export function subnetsPrefix(vni: number): string {
  return `${networkPrefix(vni)}subnets/`
}

export function sliceKey(vni: number, slice: Cidr): string {
  return `${subnetsPrefix(vni)}${slice.ip}-${slice.prefix}`
}

/** The record of a subnet key, or undefined when the key or its value is not one of ours. */
export function parseRecord(vni: number, kv: KeyValue): SliceRecord | undefined {
  const m = /^([0-9.]+)-(\d{1,2})$/.exec(kv.key.slice(subnetsPrefix(vni).length))
  if (!kv.key.startsWith(subnetsPrefix(vni)) || !m) return undefined
  try {
    const v = JSON.parse(kv.value) as {publicIp?: unknown; vtepMac?: unknown}
    return {
      slice: parseCidr(`${m[1]}/${m[2]}`),
      publicIp: parseIp(String(v.publicIp)).ip,
      vtepMac: normalizeMac(String(v.vtepMac)),
      lease: kv.lease,
    }
  } catch {
    return undefined
  }
}

/**
 * The slices to try, in order: the preferred one when it is free, then every
 * other free one in random order (as flannel picks a random free subnet: hosts
 * leasing at once rarely try the same one). The first slice of the network is
 * never handed out (flannel's default SubnetMin).
 */
export function candidateSlices(subnet: Cidr, size: number, taken: Set<string>, preferred?: string): Cidr[] {
  const free: Cidr[] = []
  const n = sliceCount(subnet, size)
  for (let i = 1n; i < n; i++) {
    const s = subnetAt(subnet, size, i)!
    if (!taken.has(formatCidr(s))) free.push(s)
  }
  for (let i = free.length - 1; i > 0; i--) {
    const j = randomInt(i + 1)
    ;[free[i], free[j]] = [free[j]!, free[i]!]
  }
  const p = preferred === undefined ? -1 : free.findIndex((s) => formatCidr(s) === preferred)
  if (p > 0) free.unshift(...free.splice(p, 1))
  return free
}

export interface LeaseRequest {
  vni: number
  subnet: Cidr
  hostSubnetSize: number
  publicIp: string
  vtepMac: string
  ttl: number
  /** the slice this host held last (its local state), tried first */
  preferred?: string
}

export interface LeaseResult {
  mine: SliceRecord
  peers: SliceRecord[]
}

function value(publicIp: string, vtepMac: string): string {
  return JSON.stringify({publicIp, vtepMac})
}

/**
 * Every slice record of a network. With the network's shape, only the
 * records that are one of its slices: a record for any other range (a
 * mistake, or a hostile writer) never becomes a route on this host.
 */
export async function listSlices(client: EtcdClient, vni: number, shape?: {subnet: Cidr; hostSubnetSize: number}): Promise<SliceRecord[]> {
  const r = await client.rangePrefix(subnetsPrefix(vni))
  return r.kvs
    .map((kv) => parseRecord(vni, kv))
    .filter((x): x is SliceRecord => x !== undefined)
    .filter((x) => !shape || (x.slice.prefix === shape.hostSubnetSize && !x.slice.v6 && cidrContains(shape.subnet, x.slice.ip) && formatCidr(networkOf(x.slice)) === formatCidr(x.slice)))
}

/**
 * This host's slice: renewed when etcd still holds it (same underlay
 * address), else a free one taken by transaction. Returns it with the peers.
 * `listed`: the network's records, read already (listSlices with the same
 * shape) while the caller did other work; used for the first round.
 */
export async function acquireSlice(client: EtcdClient, req: LeaseRequest, listed?: Promise<SliceRecord[]>): Promise<LeaseResult> {
  const publicIp = parseIp(req.publicIp).ip
  const vtepMac = normalizeMac(req.vtepMac)
  for (let round = 0; round < 5; round++) {
    const all = await (round === 0 && listed ? listed : listSlices(client, req.vni, {subnet: req.subnet, hostSubnetSize: req.hostSubnetSize}))
    const others = (mine: SliceRecord) => all.filter((r) => r !== mine && r.publicIp !== publicIp)
    const held = all.find((r) => r.publicIp === publicIp)
    if (held) {
      const ttl = held.lease === '0' ? 0 : await client.leaseKeepAlive(held.lease)
      if (ttl > 0) {
        if (held.vtepMac !== vtepMac) await client.put(sliceKey(req.vni, held.slice), value(publicIp, vtepMac), held.lease)
        return {mine: {...held, vtepMac}, peers: others(held)}
      }
    }
    const taken = new Set(all.filter((r) => r !== held).map((r) => formatCidr(r.slice)))
    const candidates = candidateSlices(req.subnet, req.hostSubnetSize, taken, held ? formatCidr(held.slice) : req.preferred)
    if (candidates.length === 0) throw new EtcdError(`etcd: no free /${req.hostSubnetSize} left in ${formatCidr(req.subnet)} (vni ${req.vni})`)
    const lease = await client.leaseGrant(req.ttl)
    for (const slice of candidates.slice(0, 8)) {
      const key = sliceKey(req.vni, slice)
      const ok = await client.txn([{key, target: 'CREATE', result: 'EQUAL', createRevision: '0'}], [{put: {key, value: value(publicIp, vtepMac), lease}}])
      if (ok) {
        const mine: SliceRecord = {slice, publicIp, vtepMac, lease}
        return {mine, peers: others(mine)}
      }
    }
    await client.leaseRevoke(lease)
  }
  throw new EtcdError(`etcd: could not lease a /${req.hostSubnetSize} of ${formatCidr(req.subnet)} (vni ${req.vni}) after 5 rounds of conflicts`)
}

/** Gives this host's slice back (network rm): revokes its etcd lease, which deletes the key. */
export async function releaseSlice(client: EtcdClient, vni: number, publicIp: string): Promise<SliceRecord | undefined> {
  const held = (await listSlices(client, vni)).find((r) => r.publicIp === parseIp(publicIp).ip)
  if (held && held.lease !== '0') await client.leaseRevoke(held.lease)
  return held
}

/**
 * Records the network's shape in etcd, or checks it against the one there:
 * every host of a VNI must slice the same subnet the same way.
 */
export async function registerNetwork(client: EtcdClient, vni: number, subnet: Cidr, hostSubnetSize: number): Promise<void> {
  const key = `${networkPrefix(vni)}config`
  const want = JSON.stringify({subnet: formatCidr(subnet), hostSubnetSize})
  const created = await client.txn([{key, target: 'CREATE', result: 'EQUAL', createRevision: '0'}], [{put: {key, value: want}}])
  if (created) return
  const have = (await client.range(key)).kvs[0]?.value
  if (have !== undefined && have !== want) throw new EtcdError(`etcd already has vni ${vni} as ${have}, not ${want}`)
}

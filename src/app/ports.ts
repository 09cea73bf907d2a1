import {Address4, Address6} from 'ip-address'
import type {Attachment} from '../libcni/cache.js'
import type {PortMapping} from '../plugins/types.js'

/**
 * Host ports are the host's: one published host port (protocol, host
 * address) belongs to one attachment. portmap itself would add a second
 * DNAT rule that the first one shadows, so `network connect` and the daemon
 * refuse it before the ADD, as nerdctl refuses a port already allocated.
 * Pure: the caller reads the cache and journal entries (an ADD in flight
 * holds its ports from its journal entry on).
 */

export interface PortConflict {
  mapping: PortMapping
  /** the attachment that publishes it already */
  holder: Pick<Attachment, 'networkName' | 'containerId' | 'ifName'>
}

/** A port an entry holds: its mapping but the container's side, hostIP '' for every address. */
type Published = Required<Omit<PortMapping, 'containerPort'>>

const PROTOCOLS: readonly string[] = ['tcp', 'udp', 'sctp'] satisfies Array<PortMapping['protocol']>

/** The port mappings an entry holds, as far as they read as such (entries of any client: never trusted). */
function publishedBy(a: Attachment): Published[] {
  const pms = a.capabilityArgs?.portMappings
  if (!Array.isArray(pms)) return []
  const out: Published[] = []
  for (const p of pms as unknown[]) {
    if (!p || typeof p !== 'object') continue
    const {hostPort, protocol, hostIP} = p as Record<string, unknown>
    if (typeof hostPort !== 'number') continue
    const proto = typeof protocol === 'string' && protocol !== '' ? protocol.toLowerCase() : 'tcp'
    // another protocol is no port we publish (ours are parsed: tcp, udp or sctp)
    if (!PROTOCOLS.includes(proto)) continue
    out.push({hostPort, protocol: proto as PortMapping['protocol'], hostIP: typeof hostIP === 'string' ? hostIP : ''})
  }
  return out
}

type HostAddr = {any: true} | {family: 4 | 6; any: boolean; addr: string}

function hostAddr(ip: string): HostAddr {
  if (ip === '') return {any: true}
  if (Address4.isValid(ip)) {
    const a = new Address4(ip)
    return {family: 4, any: a.correctForm() === '0.0.0.0', addr: a.correctForm()}
  }
  if (Address6.isValid(ip)) {
    const a = new Address6(ip)
    return {family: 6, any: a.correctForm() === '::', addr: a.correctForm()}
  }
  return {any: true} // unreadable: assume the worst
}

/** Whether two host addresses can receive the same packet: either is every address, or of the same family every address, or they are equal. */
function overlap(a: string, b: string): boolean {
  const x = hostAddr(a)
  const y = hostAddr(b)
  if (!('family' in x) || !('family' in y)) return true
  if (x.family !== y.family) return false
  return x.any || y.any || x.addr === y.addr
}

/**
 * The first of `wanted` that another attachment publishes already.
 * Attachments of the same container in another netns (an earlier task's,
 * released before this ADD) do not count.
 */
export function portConflict(wanted: PortMapping[], others: Attachment[], self: {containerId: string; netns: string}): PortConflict | undefined {
  for (const a of others) {
    if (a.containerId === self.containerId && a.netns !== self.netns) continue
    for (const p of publishedBy(a)) {
      const mapping = wanted.find((w) => w.hostPort === p.hostPort && w.protocol === p.protocol && overlap(w.hostIP ?? '', p.hostIP))
      if (mapping) return {mapping, holder: {networkName: a.networkName, containerId: a.containerId, ifName: a.ifName}}
    }
  }
  return undefined
}

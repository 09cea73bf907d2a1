import {listAttachments} from '../../libcni/cache.js'
import {procNetnsPath} from '../../kernel/netns.js'
import {parseCidr} from '../../kernel/ip/addr.js'
import {socketExists, withClient} from '../../containerd/client.js'
import {cniContainerId} from '../containers.js'
import type {Settings} from '../settings.js'
import {attachmentAddresses} from '../usage.js'
import {dnsNamesOf} from './names.js'

/**
 * Who is on which network, for its DNS zone and for nerdctl's hosts files:
 * every running or paused container, in every containerd namespace, with a
 * finished attachment (CNI cache entry) in its current task's netns. The
 * cache is what ctrnet, nerdctl and containerd's CRI leave, so containers of
 * every client are found. An attachment of an earlier task, of a stopped
 * task (the daemon's grace period) or still being made is not a member.
 */
export interface NetworkMember {
  namespace: string
  id: string
  /** dnsNamesOf: nerdctl/name, id, short id, aliases */
  names: string[]
  /** addresses without prefix length */
  ipv4: string[]
  ipv6: string[]
}

export type MemberOpts = Pick<Settings, 'address' | 'namespace' | 'cacheDir' | 'containerdTimeoutMs'>

/** network name -> its members, sorted by namespace and id. No socket at the address: no members. */
export async function networkMembers(opts: MemberOpts): Promise<Map<string, NetworkMember[]>> {
  const out = new Map<string, NetworkMember[]>()
  if (!socketExists(opts.address)) return out
  const cached = listAttachments(opts.cacheDir).filter((a) => !a.pending)
  if (cached.length === 0) return out
  await withClient({address: opts.address, namespace: opts.namespace, timeoutMs: opts.containerdTimeoutMs}, async (client) => {
    for (const ns of (await client.listNamespaces()).sort()) {
      const mine = cached.filter((a) => a.containerId.startsWith(`${ns}-`))
      if (mine.length === 0) continue
      const pids = new Map<string, number>()
      for (const t of await client.listTasks(ns)) if ((t.status === 'RUNNING' || t.status === 'PAUSED') && t.pid) pids.set(t.id, t.pid)
      if (pids.size === 0) continue
      for (const c of (await client.listContainers([], ns)).sort((x, y) => x.id.localeCompare(y.id))) {
        const pid = pids.get(c.id)
        if (!pid) continue
        const cid = cniContainerId(ns, c.id)
        for (const a of mine) {
          if (a.containerId !== cid || a.netns !== procNetnsPath(pid)) continue
          const {ipv4, ipv6} = attachmentAddresses(a)
          const list = out.get(a.networkName) ?? out.set(a.networkName, []).get(a.networkName)!
          list.push({namespace: ns, id: c.id, names: dnsNamesOf(c, a.networkName), ipv4: ipv4.flatMap(addressOf), ipv6: ipv6.flatMap(addressOf)})
        }
      }
    }
  })
  return out
}

/** The address of a result's CIDR, or nothing for one that does not parse (never served). */
function addressOf(cidr: string): string[] {
  try {
    return [parseCidr(cidr).ip]
  } catch {
    return []
  }
}

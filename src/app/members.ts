import {listAttachments} from '../libcni/cache.js'
import {procNetnsPath} from '../kernel/netns.js'
import {parseCidr, parseIp} from '../kernel/ip/addr.js'
import {socketExists} from '../containerd/client.js'
import {isLive} from '../containerd/tasks.js'
import {cniContainerId, withContainerd} from './containers.js'
import type {Settings} from './settings.js'
import {attachmentAddresses} from './usage.js'
import {isGatewayBridge} from '../plugins/bridge/config.js'
import {dnsNamesOf, hostsNamesOf} from './names.js'

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
  /** hostsNamesOf: the names of its line in nerdctl's hosts files */
  hostNames: string[]
  /** addresses without prefix length */
  ipv4: string[]
  ipv6: string[]
}

export type MemberOpts = Pick<Settings, 'address' | 'namespace' | 'cacheDir' | 'containerdTimeoutMs'>

export interface Membership {
  /** network name -> its members, sorted by namespace and id */
  members: Map<string, NetworkMember[]>
  /**
   * network name -> the gateway addresses its bridge holds on this host (from
   * the results of its attachments, any task state, on a bridge that holds
   * the gateway): where its DNS server listens
   */
  gateways: Map<string, string[]>
}

/** Who is on which network now. No socket at the address: no members (gateways still). */
export async function networkMembers(opts: MemberOpts): Promise<Membership> {
  const out = new Map<string, NetworkMember[]>()
  const cached = listAttachments(opts.cacheDir).filter((a) => !a.pending)
  const gateways = new Map<string, string[]>()
  for (const a of cached) {
    if (!isGatewayBridge(a.net?.conf.plugins?.find((p) => p?.type === 'bridge'))) continue
    const list = gateways.get(a.networkName) ?? gateways.set(a.networkName, []).get(a.networkName)!
    for (const ip of (a.result as {ips?: Array<{gateway?: unknown}>} | undefined)?.ips ?? []) {
      if (typeof ip.gateway !== 'string') continue
      const gw = parsed(() => parseIp(ip.gateway as string).ip)
      if (gw && !list.includes(gw)) list.push(gw)
    }
  }
  const done = {members: out, gateways}
  if (cached.length === 0 || !socketExists(opts.address)) return done
  await withContainerd(opts, async (client) => {
    for (const ns of (await client.listNamespaces()).sort()) {
      const mine = cached.filter((a) => a.containerId.startsWith(`${ns}-`))
      if (mine.length === 0) continue
      const pids = new Map<string, number>()
      for (const t of await client.listTasks(ns)) if (isLive(t) && t.pid) pids.set(t.id, t.pid)
      if (pids.size === 0) continue
      for (const c of (await client.listContainers([], ns)).sort((x, y) => x.id.localeCompare(y.id))) {
        const pid = pids.get(c.id)
        if (!pid) continue
        const cid = cniContainerId(ns, c.id)
        for (const a of mine) {
          if (a.containerId !== cid || a.netns !== procNetnsPath(pid)) continue
          const {ipv4, ipv6} = attachmentAddresses(a)
          const list = out.get(a.networkName) ?? out.set(a.networkName, []).get(a.networkName)!
          list.push({namespace: ns, id: c.id, names: dnsNamesOf(c, a.networkName), hostNames: hostsNamesOf(c, a.networkName), ipv4: ipv4.flatMap((c) => parsed(() => parseCidr(c).ip) ?? []), ipv6: ipv6.flatMap((c) => parsed(() => parseCidr(c).ip) ?? [])})
        }
      }
    }
  })
  return done
}

/** An address read from a cached result, or undefined when it does not parse (never served). */
function parsed(read: () => string): string | undefined {
  try {
    return read()
  } catch {
    return undefined
  }
}

/**
 * Which containers use a network (for `network rm`/`prune` and the
 * `Containers` of `network inspect`). A container uses a network when its
 * task is RUNNING or PAUSED and either its `nerdctl/networks` label lists the
 * network (what nerdctl looks at) or the CNI result cache holds an
 * attachment of it under `<namespace>-<id>` (what ctrnet and other CNI
 * users leave). Every containerd namespace is searched.
 *
 * With no socket at the address the answer is "nobody" ([] / {}); a socket
 * that exists but fails is an error.
 */
import {type Attachment, listAttachments} from '../libcni/cache.js'
import {type IpAddrLink, globalCidrs} from '../kernel/ip/addr.js'
import {ipJson} from '../kernel/ip/batch.js'
import {procNetnsPath, taskNetns} from '../kernel/netns.js'
import {socketExists} from '../containerd/client.js'
import {isLive} from '../containerd/tasks.js'
import {NETWORKS_LABEL, isCniNetworkList, parseNetworksLabel} from '../netconf/labels.js'
import {cniContainerId, displayName, withContainerd} from './containers.js'
import type {Settings} from './settings.js'
import {dnsNamesOf} from './names.js'
import type {ContainerInfo} from '../containerd/client.js'

export interface NetworkUser {
  namespace: string
  id: string
  /** nerdctl/name label, else the id */
  name: string
  /** RUNNING | PAUSED */
  status: string
}

export interface InspectContainer {
  Name: string
  MacAddress: string
  IPv4Address: string
  IPv6Address: string
  /** the names the network's DNS answers for it (app/dns/names.ts) */
  DNSNames: string[]
}

export type ContainerdOpts = Pick<Settings, 'address' | 'namespace' | 'cacheDir' | 'containerdTimeoutMs'>

interface Use {
  user: NetworkUser
  container: ContainerInfo
  attachment?: Attachment
  /** Task pid and the network's position in the label (nerdctl names it eth<index>). */
  pid: number
  labelIndex: number
}

async function findUses(opts: ContainerdOpts, network: string): Promise<Use[]> {
  if (!socketExists(opts.address)) return []
  // finished attachments only: an ADD still in flight does not make a user
  const cached = listAttachments(opts.cacheDir, {network}).filter((a) => !a.pending)
  return withContainerd(opts, async (client) => {
    const uses: Use[] = []
    for (const ns of await client.listNamespaces()) {
      const tasks = new Map<string, {status: string; pid: number}>()
      for (const t of await client.listTasks(ns)) {
        if (isLive(t)) tasks.set(t.id, {status: t.status, pid: t.pid})
      }
      if (tasks.size === 0) continue
      // Candidates: containers with the label, plus those the cache names.
      const byId = new Map((await client.listContainers([`labels."${NETWORKS_LABEL}"`], ns)).map((c) => [c.id, c]))
      for (const a of cached) {
        if (!a.containerId.startsWith(`${ns}-`)) continue
        const id = a.containerId.slice(ns.length + 1)
        if (!tasks.has(id) || byId.has(id)) continue
        const c = await client.getContainer(id, ns)
        if (c) byId.set(id, c)
      }
      for (const c of [...byId.values()].sort((x, y) => x.id.localeCompare(y.id))) {
        const task = tasks.get(c.id)
        if (!task) continue
        // Only an attachment in the current task's netns counts (not one left by an earlier task).
        const attachment = cached.find((a) => a.containerId === cniContainerId(ns, c.id) && a.netns === procNetnsPath(task.pid))
        const nets = parseNetworksLabel(c.labels) ?? []
        const labelIndex = isCniNetworkList(nets) ? nets.indexOf(network) : -1
        if (!attachment && labelIndex < 0) continue
        uses.push({user: {namespace: ns, id: c.id, name: displayName(c), status: task.status}, container: c, attachment, pid: task.pid, labelIndex})
      }
    }
    return uses
  })
}

/** Running or paused containers, in any namespace, attached to the network. */
export async function networkUsers(opts: ContainerdOpts, network: string): Promise<NetworkUser[]> {
  return (await findUses(opts, network)).map((u) => u.user)
}

interface ResultShape {
  interfaces?: Array<{name?: string; mac?: string; sandbox?: string}>
  ips?: Array<{address?: string; interface?: number}>
}

/** The MAC and every address (CIDR form) of the attachment's interface in the container, from its cached CNI result. */
export function attachmentAddresses(a: Attachment | undefined): {mac: string; ipv4: string[]; ipv6: string[]} {
  const out = {mac: '', ipv4: [] as string[], ipv6: [] as string[]}
  const r = a?.result as ResultShape | undefined
  if (!r) return out
  const ifaces = r.interfaces ?? []
  let idx = ifaces.findIndex((i) => i.name === a!.ifName && i.sandbox)
  if (idx < 0) idx = ifaces.findIndex((i) => i.sandbox)
  if (idx >= 0) out.mac = ifaces[idx].mac ?? ''
  for (const ip of r.ips ?? []) {
    if (!ip.address) continue
    if (idx >= 0 && ip.interface !== undefined && ip.interface !== idx) continue
    ;(ip.address.includes(':') ? out.ipv6 : out.ipv4).push(ip.address)
  }
  return out
}

/** MAC and first addresses of the container's interface from a cached CNI result. */
function endpoint(a: Attachment | undefined): Omit<InspectContainer, 'Name' | 'DNSNames'> {
  const {mac, ipv4, ipv6} = attachmentAddresses(a)
  return {MacAddress: mac, IPv4Address: ipv4[0] ?? '', IPv6Address: ipv6[0] ?? ''}
}

/**
 * With no cache entry (attached by nerdctl with another cache dir), read the
 * interface nerdctl gives the network, eth<position in the label>, from the
 * container's netns, as nerdctl's inspect reads the netns.
 */
async function endpointFromNetns(u: Use): Promise<Omit<InspectContainer, 'Name' | 'DNSNames'>> {
  const out = {MacAddress: '', IPv4Address: '', IPv6Address: ''}
  if (u.labelIndex < 0 || !u.pid) return out
  // never read the host's (or our own) namespace for a container's
  const netns = taskNetns(u.pid)
  if (!netns) return out
  try {
    const links = await ipJson<IpAddrLink[]>(['addr', 'show', 'dev', `eth${u.labelIndex}`], netns)
    const link = links[0]
    if (!link) return out
    out.MacAddress = link.address ?? ''
    for (const cidr of globalCidrs(link)) {
      if (cidr.includes(':')) out.IPv6Address ||= cidr
      else out.IPv4Address ||= cidr
    }
  } catch {
    /* gone or not ours to read: leave the details empty */
  }
  return out
}

/** `Containers` of `network inspect`: full container id -> details. */
export async function inspectContainers(opts: ContainerdOpts, network: string): Promise<Record<string, InspectContainer>> {
  const out: Record<string, InspectContainer> = {}
  for (const u of await findUses(opts, network)) {
    out[u.user.id] = {Name: u.user.name, ...(u.attachment ? endpoint(u.attachment) : await endpointFromNetns(u)), DNSNames: dnsNamesOf(u.container, network)}
  }
  return out
}

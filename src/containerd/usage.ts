/**
 * Which containers use a network (for `network rm`/`prune` and the
 * `Containers` of `network inspect`). A container uses a network when its
 * task is RUNNING or PAUSED and either its `nerdctl/networks` label lists the
 * network (what nerdctl looks at) or the CNI result cache holds an
 * attachment of it under `<namespace>-<id>` (what ctrnet and other CNI
 * users leave). Every containerd namespace is searched.
 *
 * grpc loads only when a socket exists at the address; with no socket the
 * answer is "nobody" ([] / {}); a socket that exists but fails is an error.
 */
import {listCachedAttachments, type CachedAttachment} from '../cni/cache.js'

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
}

export interface ContainerdOpts {
  address: string
  namespace: string
  cacheDir: string
}

interface Use {
  user: NetworkUser
  attachment?: CachedAttachment
}

async function findUses(opts: ContainerdOpts, network: string): Promise<Use[]> {
  const {socketExists, withClient} = await import('./client.js')
  if (!socketExists(opts.address)) return []
  const {NETWORKS_LABEL, cniContainerId, displayName, isCniNetworkList, parseNetworksLabel} = await import('./containers.js')
  const cached = listCachedAttachments(opts.cacheDir, network)
  return withClient({address: opts.address, namespace: opts.namespace}, async (client) => {
    const uses: Use[] = []
    for (const ns of await client.listNamespaces()) {
      const tasks = new Map<string, {status: string; pid: number}>()
      for (const t of await client.listTasks(ns)) {
        if (t.status === 'RUNNING' || t.status === 'PAUSED') tasks.set(t.id, {status: t.status, pid: t.pid})
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
        const attachment = cached.find((a) => a.containerId === cniContainerId(ns, c.id) && a.netns === `/proc/${task.pid}/ns/net`)
        const nets = parseNetworksLabel(c.labels) ?? []
        if (!attachment && !(isCniNetworkList(nets) && nets.includes(network))) continue
        uses.push({user: {namespace: ns, id: c.id, name: displayName(c), status: task.status}, attachment})
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

/** MAC and addresses of the container's interface from a cached CNI result. */
function endpoint(a: CachedAttachment | undefined): Omit<InspectContainer, 'Name'> {
  const out = {MacAddress: '', IPv4Address: '', IPv6Address: ''}
  const r = a?.result as ResultShape | undefined
  if (!r) return out
  const ifaces = r.interfaces ?? []
  let idx = ifaces.findIndex((i) => i.name === a!.ifName && i.sandbox)
  if (idx < 0) idx = ifaces.findIndex((i) => i.sandbox)
  if (idx >= 0) out.MacAddress = ifaces[idx].mac ?? ''
  for (const ip of r.ips ?? []) {
    if (!ip.address) continue
    if (idx >= 0 && ip.interface !== undefined && ip.interface !== idx) continue
    if (ip.address.includes(':')) out.IPv6Address ||= ip.address
    else out.IPv4Address ||= ip.address
  }
  return out
}

/** `Containers` of `network inspect`: full container id -> details. */
export async function inspectContainers(opts: ContainerdOpts, network: string): Promise<Record<string, InspectContainer>> {
  const out: Record<string, InspectContainer> = {}
  for (const u of await findUses(opts, network)) {
    out[u.user.id] = {Name: u.user.name, ...endpoint(u.attachment)}
  }
  return out
}

import {readFileSync, readlinkSync} from 'node:fs'
import {CtrnetError} from '../sys/errors.js'
import type {ContainerInfo, ContainerdClient, TaskInfo} from './client.js'

/** nerdctl's labels (pkg/labels/labels.go). */
export const NAME_LABEL = 'nerdctl/name'
export const NETWORKS_LABEL = 'nerdctl/networks'
export const HOSTNAME_LABEL = 'nerdctl/hostname'

/** The CNI container id nerdctl uses: `<namespace>-<container id>`. */
export function cniContainerId(namespace: string, id: string): string {
  return `${namespace}-${id}`
}

export function displayName(c: ContainerInfo): string {
  return c.labels?.[NAME_LABEL] || c.id
}

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

/** nerdctl's nettype: only a list of plain names is a CNI attachment list. */
export function isCniNetworkList(nets: string[]): boolean {
  return nets.length > 0 && nets.every((n) => n !== 'host' && n !== 'none' && !n.startsWith('container:') && !n.startsWith('ns:'))
}

/** Go's json.Marshal of []string (network names never need Go's HTML escapes). */
export function formatNetworksLabel(nets: string[]): string {
  return JSON.stringify(nets)
}

/**
 * Finds a container in the client's namespace by full id, by `nerdctl/name`
 * label, or by unique id prefix (in that order, as nerdctl's walker).
 */
export async function resolveContainer(client: ContainerdClient, ref: string): Promise<ContainerInfo> {
  if (!ref) throw new CtrnetError('container', 'empty container name or id')
  const exact = await client.getContainer(ref)
  if (exact) return exact
  const all = await client.listContainers()
  const byName = all.filter((c) => c.labels?.[NAME_LABEL] === ref)
  if (byName.length === 1) return byName[0]
  if (byName.length > 1) {
    throw new CtrnetError(`container ${ref}`, `the name is ambiguous: ${byName.map((c) => c.id).join(', ')}`)
  }
  const byPrefix = all.filter((c) => c.id.startsWith(ref))
  if (byPrefix.length === 1) return byPrefix[0]
  if (byPrefix.length > 1) {
    throw new CtrnetError(`container ${ref}`, `multiple IDs found with provided prefix: ${byPrefix.map((c) => c.id).join(', ')}`)
  }
  await assertNamespace(client)
  throw new CtrnetError(`no such container: ${ref}`, `not found in containerd namespace "${client.namespace}"`)
}

/** Errors with "unknown namespace" when the client's namespace does not exist. */
export async function assertNamespace(client: ContainerdClient): Promise<void> {
  const nss = await client.listNamespaces()
  if (!nss.includes(client.namespace)) {
    throw new CtrnetError(`unknown containerd namespace "${client.namespace}"`, nss.length ? `known: ${nss.join(', ')}` : 'containerd has no namespaces')
  }
}

/** The network namespace of a process, as `net:[inode]`, or undefined when it is gone. */
export function netnsInode(path: string): string | undefined {
  try {
    return readlinkSync(path)
  } catch {
    return undefined
  }
}

export function netnsPathOf(pid: number): string {
  return `/proc/${pid}/ns/net`
}

/**
 * The netns of a container's RUNNING task. Refuses other states, and a task
 * that shares our network namespace or init's (host networking).
 */
export function runningNetns(container: ContainerInfo, task: TaskInfo | undefined): {pid: number; netns: string} {
  const name = displayName(container)
  if (!task) throw new CtrnetError(`container ${name} is not running`, 'it has no task (start it first)')
  if (task.status !== 'RUNNING') {
    throw new CtrnetError(`container ${name} is not running`, `its task is ${task.status.toLowerCase()}`)
  }
  if (!task.pid) throw new CtrnetError(`container ${name}`, 'containerd reports no pid for its task')
  const netns = netnsPathOf(task.pid)
  const inode = netnsInode(netns)
  if (!inode) throw new CtrnetError(`container ${name}`, `cannot read ${netns} (its task may have just exited; are you root?)`)
  if (inode === netnsInode('/proc/self/ns/net') || inode === netnsInode('/proc/1/ns/net')) {
    throw new CtrnetError(`container ${name}`, 'it uses the host network namespace; give it its own to connect it to a network')
  }
  return {pid: task.pid, netns}
}

/** Interface names present in a process's network namespace (/proc/<pid>/net/dev). */
export function interfacesOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/net/dev`, 'utf8')
      .split('\n')
      .slice(2)
      .map((l) => l.split(':')[0].trim())
      .filter(Boolean)
  } catch {
    return []
  }
}

/** The hostname nerdctl hands to CNI (NERDCTL_CNI_DHCP_HOSTNAME): its annotation, else the spec's hostname. */
export function specHostname(c: ContainerInfo): string {
  const value = c.spec?.value
  if (!value || value.length === 0) return ''
  try {
    const spec = JSON.parse(Buffer.from(value).toString('utf8')) as {hostname?: string; annotations?: Record<string, string>}
    return spec.annotations?.[HOSTNAME_LABEL] || spec.hostname || ''
  } catch {
    return ''
  }
}

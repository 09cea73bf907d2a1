import {CtrnetError} from '../sys/errors.js'
import {procNetnsPath, taskNetnsState} from '../kernel/netns.js'
import type {ContainerInfo, ContainerdClient, TaskInfo} from '../containerd/client.js'
import {findContainer, ociSpec} from '../containerd/containers.js'

/**
 * containerd containers as nerdctl sees them: its labels, the CNI container
 * id it gives them, which of them have a CNI network list.
 */

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
export function resolveContainer(client: ContainerdClient, ref: string): Promise<ContainerInfo> {
  return findContainer(client, ref, NAME_LABEL)
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
  const netns = procNetnsPath(task.pid)
  const state = taskNetnsState(task.pid)
  if (state === 'gone') throw new CtrnetError(`container ${name}`, `cannot read ${netns} (its task may have just exited; are you root?)`)
  if (state === 'host') {
    throw new CtrnetError(`container ${name}`, 'it uses the host network namespace; give it its own to connect it to a network')
  }
  return {pid: task.pid, netns}
}

/** The hostname nerdctl hands to CNI (NERDCTL_CNI_DHCP_HOSTNAME): its annotation, else the spec's hostname. */
export function specHostname(c: ContainerInfo): string {
  const spec = ociSpec(c)
  return spec?.annotations?.[HOSTNAME_LABEL] || spec?.hostname || ''
}

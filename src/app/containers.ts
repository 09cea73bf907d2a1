import {CtrnetError} from '../sys/errors.js'
import {procNetnsPath, taskNetnsState} from '../kernel/netns.js'
import {type ContainerInfo, type ContainerdClient, type TaskInfo, withClient} from '../containerd/client.js'
import {findContainer, ociSpec} from '../containerd/containers.js'
import {HOSTNAME_LABEL, NAME_LABEL} from '../netconf/labels.js'
import type {Settings} from './settings.js'

/**
 * containerd containers as nerdctl sees them: their names, the CNI container
 * id nerdctl gives them, their task's netns (the labels: netconf/labels.ts).
 */

/** What a containerd session needs of the Settings. */
export type ContainerdSettings = Pick<Settings, 'address' | 'namespace' | 'containerdTimeoutMs'>

/** One containerd session of ctrnet's: connects with the Settings' address, namespace and deadline, runs fn, closes. */
export function withContainerd<T>(s: ContainerdSettings, fn: (client: ContainerdClient) => Promise<T>): Promise<T> {
  return withClient({address: s.address, namespace: s.namespace, timeoutMs: s.containerdTimeoutMs}, fn)
}

/** The CNI container id nerdctl uses: `<namespace>-<container id>`. */
export function cniContainerId(namespace: string, id: string): string {
  return `${namespace}-${id}`
}

export function displayName(c: ContainerInfo): string {
  return c.labels?.[NAME_LABEL] || c.id
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

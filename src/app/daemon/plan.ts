import {isLive} from '../../containerd/tasks.js'
import type {AttachRequest} from '../../netconf/attach-request.js'
import type {Intent} from '../../netconf/labels.js'

/**
 * The daemon's reconcile, pure part: what containerd and the CNI cache say
 * (observed by reconcile.ts) -> what to release and what to attach. No I/O,
 * so every rule is unit-tested without root.
 */

export interface ObservedTask {
  status: 'UNKNOWN' | 'CREATED' | 'RUNNING' | 'STOPPED' | 'PAUSED' | 'PAUSING'
  /** The live task's own netns (/proc/<pid>/ns/net, kernel/netns taskNetns); undefined when it has none we may enter. */
  netns?: string
}

export interface ObservedContainer {
  namespace: string
  id: string
  /** CNI container id, `<namespace>-<id>` */
  cid: string
  intent?: Intent
  /** undefined: the container has no task */
  task?: ObservedTask
  /** ms since the epoch: since when it has had no live task (exited_at, else when the daemon first saw it so); undefined while it has one */
  stoppedSince?: number
}

export interface ObservedAttachment {
  networkName: string
  containerId: string
  ifName: string
  netns?: string
  /** a journal entry: an ADD that has not finished (or was killed) */
  pending: boolean
  /** made in a named netns that still exists (`cni add` into /var/run/netns/x): never the daemon's to release */
  inLiveNamedNetns: boolean
}

export type ReleaseReason = 'container gone' | 'task stopped' | 'task replaced'

export interface Release {
  cid: string
  network: string
  ifName: string
  /** the netns the plan saw: the act step releases only if the entry still names it */
  netns?: string
  reason: ReleaseReason
}

export interface Add {
  namespace: string
  id: string
  cid: string
  intent: AttachRequest
}

export interface Refusal {
  namespace: string
  id: string
  reason: string
}

export interface Plan {
  releases: Release[]
  adds: Add[]
  refusals: Refusal[]
}

/**
 * desired = containers with a RUNNING or PAUSED task x their intent; actual =
 * the cache and journal entries.
 * - Release (never entering a netns) an attachment whose container is gone,
 *   whose container has had no live task for at least graceMs, or whose netns
 *   is not the current task's (a restart). Attachments of every client count
 *   (nerdctl's, `network connect`'s): only their container's life decides.
 *   A task in transition (CREATED, PAUSING, UNKNOWN: nerdctl's createRuntime
 *   hook runs while the task is CREATED) is never raced, nor an attachment in
 *   a named netns that still exists.
 * - Attach every network of the intent of a RUNNING container (with a netns
 *   of its own) that has no finished attachment in its current netns. A
 *   PAUSED container keeps what it has and gets nothing new.
 * - A label that does not parse is a refusal: nothing is attached from it.
 */
export function planReconcile(containers: ObservedContainer[], attachments: ObservedAttachment[], opts: {now: number; graceMs: number}): Plan {
  const byCid = new Map(containers.map((c) => [c.cid, c]))
  const releases: Release[] = []
  const release = (a: ObservedAttachment, reason: ReleaseReason) =>
    releases.push({cid: a.containerId, network: a.networkName, ifName: a.ifName, netns: a.netns, reason})
  for (const a of attachments) {
    if (a.inLiveNamedNetns) continue
    const c = byCid.get(a.containerId)
    if (!c) {
      release(a, 'container gone')
      continue
    }
    const t = c.task
    if (isLive(t)) {
      // a live task whose netns we cannot vouch for (host netns, just exiting) decides nothing
      if (t!.netns !== undefined && a.netns !== t!.netns) release(a, 'task replaced')
      continue
    }
    if (t !== undefined && t.status !== 'STOPPED') continue
    if (c.stoppedSince !== undefined && opts.now - c.stoppedSince >= opts.graceMs) release(a, 'task stopped')
  }

  const adds: Add[] = []
  const refusals: Refusal[] = []
  for (const c of containers) {
    if (c.intent === undefined) continue
    if ('refused' in c.intent) {
      refusals.push({namespace: c.namespace, id: c.id, reason: c.intent.refused})
      continue
    }
    if (c.task?.status !== 'RUNNING' || c.task.netns === undefined) continue
    const netns = c.task.netns
    for (const intent of c.intent.networks) {
      const attached = attachments.some((a) => a.containerId === c.cid && a.networkName === intent.network && a.netns === netns && !a.pending)
      if (!attached) adds.push({namespace: c.namespace, id: c.id, cid: c.cid, intent})
    }
  }
  return {releases, adds, refusals}
}

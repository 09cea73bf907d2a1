import {type Attachment, listAttachments, sweepCacheTemps} from '../../libcni/cache.js'
import type {CniRuntime} from '../../libcni/runtime.js'
import type {LoadedConf} from '../../libcni/loader.js'
import {taskNetns} from '../../kernel/netns.js'
import {errorMessage, formatError} from '../../sys/errors.js'
import type {ContainerdClient} from '../../containerd/client.js'
import {isLive} from '../../containerd/tasks.js'
import {intentOf} from '../../netconf/labels.js'
import {NoSuchNetwork} from '../../netconf/store.js'
import type {Logger} from '../../sys/log.js'
import {makeRuntime} from '../cni.js'
import type {Settings} from '../settings.js'
import {attachNetwork, loadAttachNetwork, withContainerLock} from '../attach.js'
import {inLiveNamedNetns, releaseAttachment} from '../gc.js'
import {cniContainerId, runningNetns, withContainerd} from '../containers.js'
import {AttachBackoff, type AttachFault, attemptEpoch, holdAdds} from './backoff.js'
import {type Add, type ObservedContainer, type Plan, planReconcile, type Refusal, type Release} from './plan.js'

/**
 * One level-triggered pass of the daemon over every containerd namespace:
 * observe (containerd's containers and tasks, the CNI cache and journal) ->
 * plan (plan.ts, pure) -> act (release, then attach, per container under its
 * lock, a few containers at a time). A failure is logged and reported; it
 * never stops the pass.
 */

/** What the daemon remembers between passes. */
export interface DaemonState {
  /** CNI container id -> when the daemon first saw it without a live task (used when containerd has no exited_at) */
  firstSeenStopped: Map<string, number>
  /** CNI container id -> the refusal last logged (one line per change, not one per pass) */
  refused: Map<string, string>
  /** CNI container id -> its failed attaches: adds wait for the next try, one log line per change of reason */
  backoff: AttachBackoff
}

export function newDaemonState(backoff = new AttachBackoff()): DaemonState {
  return {firstSeenStopped: new Map(), refused: new Map(), backoff}
}

export interface ReconcileOptions {
  graceMs: number
  log: Logger
  now?: () => number
  state?: DaemonState
  /** containers worked on at once (default 4) */
  concurrency?: number
  /** asked between containers: true stops the pass before the next one starts */
  stopping?: () => boolean
}

export interface Done {
  namespace?: string
  container: string
  network: string
  ifName: string
  reason?: string
}

export interface Failed {
  namespace?: string
  container: string
  network?: string
  action: 'attach' | 'release'
  reason: string
}

export interface ReconcileReport {
  attached: Done[]
  released: Done[]
  failed: Failed[]
  refused: Refusal[]
  /** containers whose adds waited for their next try (an earlier attach failed) */
  held: number
  /** ms since the epoch: the earliest next try of a container that failed or was held in this pass (the loop wakes for it) */
  nextRetry?: number
}

interface Observed {
  containers: ObservedContainer[]
  attachments: Attachment[]
  namespaces: string[]
}

async function observe(client: ContainerdClient, s: Settings, now: number, state: DaemonState): Promise<Observed> {
  const containers: ObservedContainer[] = []
  const namespaces = await client.listNamespaces()
  const seen = new Set<string>()
  for (const ns of namespaces) {
    const tasks = new Map((await client.listTasks(ns)).map((t) => [t.id, t]))
    for (const c of await client.listContainers([], ns)) {
      const cid = cniContainerId(ns, c.id)
      seen.add(cid)
      const t = tasks.get(c.id)
      const oc: ObservedContainer = {namespace: ns, id: c.id, cid, intent: intentOf(c.labels)}
      if (t) oc.task = {status: t.status, netns: isLive(t) ? taskNetns(t.pid) : undefined}
      if (!t || t.status === 'STOPPED') {
        if (!state.firstSeenStopped.has(cid)) state.firstSeenStopped.set(cid, now)
        oc.stoppedSince = t?.exitedAt?.getTime() ?? state.firstSeenStopped.get(cid)
      } else {
        state.firstSeenStopped.delete(cid)
      }
      containers.push(oc)
    }
  }
  for (const cid of state.firstSeenStopped.keys()) if (!seen.has(cid)) state.firstSeenStopped.delete(cid)
  state.backoff.keepOnly(seen)
  return {containers, attachments: listAttachments(s.cacheDir), namespaces}
}

/** The namespace a CNI container id of a gone container was made in (the longest `<ns>-` prefix), if any. */
function namespaceOf(cid: string, namespaces: string[]): string | undefined {
  return namespaces.filter((ns) => cid.startsWith(`${ns}-`)).sort((a, b) => b.length - a.length)[0]
}

/** Runs fn over items, at most `limit` at a time. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!)
  }
  await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker))
}

export async function reconcile(s: Settings, opts: ReconcileOptions): Promise<ReconcileReport> {
  const now = opts.now ?? Date.now
  const state = opts.state ?? newDaemonState()
  const {log} = opts
  const report: ReconcileReport = {attached: [], released: [], failed: [], refused: [], held: 0}
  const runtime = makeRuntime(s)
  // a daemon or CLI killed while writing an entry leaves its temp file: litter, never an entry
  sweepCacheTemps(s.cacheDir)
  await withContainerd(s, async (client) => {
    const seen = await observe(client, s, now(), state)
    const actual = seen.attachments.map((a) => ({...a, inLiveNamedNetns: inLiveNamedNetns(a)}))
    const plan = planReconcile(seen.containers, actual, {now: now(), graceMs: opts.graceMs})

    for (const r of plan.refusals) {
      const cid = cniContainerId(r.namespace, r.id)
      report.refused.push(r)
      if (state.refused.get(cid) === r.reason) continue
      state.refused.set(cid, r.reason)
      log.warn({container: r.id, namespace: r.namespace, action: 'attach', outcome: 'refused', reason: r.reason}, `${r.namespace}/${r.id}: ${r.reason}`)
    }
    const refusedNow = new Set(plan.refusals.map((r) => cniContainerId(r.namespace, r.id)))
    for (const cid of state.refused.keys()) if (!refusedNow.has(cid)) state.refused.delete(cid)

    const byCid = new Map(seen.containers.map((c) => [c.cid, c]))
    // a container whose last attach failed waits for its next try (its releases do not)
    const hold = holdAdds(plan.adds, byCid, state.backoff, now())
    plan.adds = hold.adds
    report.held = hold.held
    report.nextRetry = hold.nextTry
    const jobs = groupByContainer(plan)
    await pool([...jobs.entries()], opts.concurrency ?? 4, async ([cid, job]) => {
      if (opts.stopping?.()) return
      const c = byCid.get(cid)
      const namespace = c?.namespace ?? namespaceOf(cid, seen.namespaces)
      // the container's networks live in its namespace's conflist folder
      const sn: Settings = {...s, namespace: namespace ?? s.namespace}
      await withContainerLock(s, cid, async () => {
        for (const r of job.releases) await release(sn, runtime, log, report, r, c?.id ?? cid, namespace)
        if (job.adds.length > 0 && c) await attach(client, sn, runtime, {log, report, state, now}, c, job.adds)
      })
    })
  })
  log.info(
    {action: 'reconcile', attached: report.attached.length, released: report.released.length, failed: report.failed.length, refused: report.refused.length, held: report.held},
    'reconcile pass done',
  )
  return report
}

function groupByContainer(plan: Plan): Map<string, {releases: Release[]; adds: Add[]}> {
  const jobs = new Map<string, {releases: Release[]; adds: Add[]}>()
  const job = (cid: string) => jobs.get(cid) ?? jobs.set(cid, {releases: [], adds: []}).get(cid)!
  for (const r of plan.releases) job(r.cid).releases.push(r)
  for (const a of plan.adds) job(a.cid).adds.push(a)
  return jobs
}

async function release(s: Settings, runtime: CniRuntime, log: Logger, report: ReconcileReport, r: Release, container: string, namespace: string | undefined) {
  const started = Date.now()
  // under the lock: release only what the plan saw (a concurrent connect may have re-attached it)
  const a = listAttachments(s.cacheDir, {network: r.network, containerId: r.cid}).find((x) => x.ifName === r.ifName)
  if (!a || a.netns !== r.netns) return
  const base = {container, namespace, network: r.network, ifname: r.ifName, action: 'release', reason: r.reason}
  try {
    await releaseAttachment(s, runtime, a)
    report.released.push({namespace, container, network: r.network, ifName: r.ifName, reason: r.reason})
    log.info({...base, ms: Date.now() - started, outcome: 'ok'}, `released ${r.network} ${r.cid} ${r.ifName} (${r.reason})`)
  } catch (err) {
    const reason = errorMessage(err)
    report.failed.push({namespace, container, network: r.network, action: 'release', reason})
    log.error({...base, ms: Date.now() - started, outcome: 'failed', reason}, `release ${r.network} ${r.cid} ${r.ifName} failed: ${reason}`)
  }
}

/**
 * Attaches the planned networks of one container, under its lock, with fresh
 * state: the task now, the cache now. Every network is loaded before any is
 * attached, so a label naming a missing network attaches nothing. A failure
 * puts the container in backoff (backoff.ts); its log lines are written only
 * when the reasons change, a retry failing the same way is only counted.
 */
async function attach(
  client: ContainerdClient,
  s: Settings,
  runtime: CniRuntime,
  ctx: {log: Logger; report: ReconcileReport; state: DaemonState; now: () => number},
  oc: ObservedContainer,
  adds: Add[],
) {
  const {log, report} = ctx
  const started = Date.now()
  const faults: Array<AttachFault & {ms: number}> = []
  const fail = (err: unknown, network?: string) => {
    // one line, as the CLI prints it (a label's value may hold any character)
    const reason = formatError(err).replace(/^ctrnet: /, '')
    report.failed.push({namespace: oc.namespace, container: oc.id, network, action: 'attach', reason})
    faults.push({network, reason, ms: Date.now() - started})
  }
  const nets = new Map<string, LoadedConf>()
  let gone = false
  try {
    const c = await client.getContainer(oc.id, oc.namespace)
    if (!c) {
      gone = true // deleted since the plan: the next pass releases what it had
      return
    }
    const at = runningNetns(c, await client.getTask(oc.id, oc.namespace))
    // the labels now: a disconnect (or any client) may have changed them since the plan
    const fresh = intentOf(c.labels)
    const planned = new Set(adds.map((a) => a.intent.network))
    const todo = fresh && 'networks' in fresh ? fresh.networks.filter((n) => planned.has(n.network)) : []
    for (const intent of todo) {
      const net = await loadAttachNetwork(s, intent.network, true)
      if (!net) return fail(new NoSuchNetwork(intent.network, s), intent.network)
      nets.set(intent.network, net)
    }
    for (const intent of todo) {
      const t0 = Date.now()
      const base = {container: oc.id, namespace: oc.namespace, network: intent.network, action: 'attach'}
      try {
        const done = await attachNetwork(s, runtime, c, at, nets.get(intent.network)!, intent, {what: 'daemon attach', existing: 'resume'})
        if (!done) continue // attached since the plan
        report.attached.push({namespace: oc.namespace, container: oc.id, network: done.netName, ifName: done.ifName})
        log.info({...base, ifname: done.ifName, ms: Date.now() - t0, outcome: 'ok'}, `attached ${done.netName} ${oc.cid} ${done.ifName}`)
      } catch (err) {
        fail(err, intent.network)
      }
    }
  } catch (err) {
    fail(err)
  } finally {
    if (faults.length === 0) {
      if (!gone) ctx.state.backoff.succeeded(oc.cid)
    } else {
      const {log: worth, failure} = ctx.state.backoff.failed(oc.cid, attemptEpoch(oc), ctx.now(), faults.map(({network, reason}) => ({network, reason})))
      const retryInMs = failure.nextTry - ctx.now()
      report.nextRetry = Math.min(report.nextRetry ?? failure.nextTry, failure.nextTry)
      if (worth) {
        for (const f of faults) {
          log.error(
            {container: oc.id, namespace: oc.namespace, network: f.network, action: 'attach', ms: f.ms, outcome: 'failed', reason: f.reason, attempt: failure.count, retryInMs},
            `attach ${oc.namespace}/${oc.id} failed: ${f.reason}`,
          )
        }
      }
    }
  }
}

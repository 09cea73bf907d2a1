import {type BackoffPolicy, backoffDelay} from '../../sys/timing.js'
import type {Add, ObservedContainer} from './plan.js'

/**
 * Per-container backoff of failed attaches; pure (the caller gives the
 * time), so test/unit drives it with its own clock.
 *
 * Passes come every interval and on every containerd event, so without it a
 * container whose ADD fails would be retried, and logged, at each of them.
 * A failure holds the container's adds until its next try: 1 s after the
 * first failure, doubling up to 5 min. What the attempt was made for, its
 * epoch (the task's netns and the container's parsed intent), is kept with
 * it: a new task or new labels start afresh, as does a success.
 *
 * Logging: a failure is worth a line when it is the first of its epoch or
 * its reasons differ from the last failure's; a retry that fails the same
 * way again is only counted (the pass summary's `failed`).
 */

export type {BackoffPolicy}

export const ATTACH_BACKOFF: BackoffPolicy = {firstMs: 1000, capMs: 300_000}

/** One network's failure in an attempt (network undefined: the whole container's, e.g. containerd's answer). */
export interface AttachFault {
  network?: string
  reason: string
}

export interface AttachFailure {
  epoch: string
  /** failed attempts in a row, in this epoch */
  count: number
  faults: AttachFault[]
  /** ms since the epoch: no attach before this */
  nextTry: number
}

/** What a failed attempt is remembered with: the task's netns and the intent it was made for. */
export function attemptEpoch(c: Pick<ObservedContainer, 'task' | 'intent'>): string {
  return JSON.stringify([c.task?.netns ?? null, c.intent ?? null])
}

const faultsKey = (faults: AttachFault[]) => JSON.stringify(faults.map((f) => [f.network ?? null, f.reason]).sort())

export class AttachBackoff {
  private readonly failures = new Map<string, AttachFailure>()

  constructor(private readonly policy: BackoffPolicy = ATTACH_BACKOFF) {}

  /** The delay after the n-th failure in a row (n >= 1). */
  delayAfter(n: number): number {
    return backoffDelay(this.policy, n)
  }

  /**
   * When cid's adds wait: the time of its next try, or undefined when it may
   * try now. A failure of another epoch (new task, new labels) is forgotten.
   */
  heldUntil(cid: string, epoch: string, now: number): number | undefined {
    const f = this.failures.get(cid)
    if (!f) return undefined
    if (f.epoch !== epoch) {
      this.failures.delete(cid)
      return undefined
    }
    return now < f.nextTry ? f.nextTry : undefined
  }

  /**
   * Records a failed attempt (faults: one per network that failed, at least
   * one). log: whether it deserves log lines (first failure of the epoch,
   * or other reasons than the last failure's).
   */
  failed(cid: string, epoch: string, now: number, faults: AttachFault[]): {log: boolean; failure: AttachFailure} {
    const last = this.failures.get(cid)
    const same = last !== undefined && last.epoch === epoch
    const count = same ? last.count + 1 : 1
    const failure: AttachFailure = {epoch, count, faults, nextTry: now + this.delayAfter(count)}
    this.failures.set(cid, failure)
    return {log: !same || faultsKey(last.faults) !== faultsKey(faults), failure}
  }

  /** An attempt that failed nowhere: the backoff starts afresh. */
  succeeded(cid: string): void {
    this.failures.delete(cid)
  }

  /** Forgets the containers that are not in `cids` (deleted). */
  keepOnly(cids: Set<string>): void {
    for (const cid of this.failures.keys()) if (!cids.has(cid)) this.failures.delete(cid)
  }

  get(cid: string): AttachFailure | undefined {
    return this.failures.get(cid)
  }
}

/**
 * The plan's adds without those of containers in backoff (their releases
 * are not held): what may run now, how many containers wait, and the
 * earliest next try among them.
 */
export function holdAdds(adds: Add[], containers: Map<string, Pick<ObservedContainer, 'task' | 'intent'>>, backoff: AttachBackoff, now: number): {adds: Add[]; held: number; nextTry?: number} {
  const held = new Set<string>()
  let nextTry: number | undefined
  const free = adds.filter((a) => {
    const c = containers.get(a.cid)
    const until = c && backoff.heldUntil(a.cid, attemptEpoch(c), now)
    if (until === undefined) return true
    held.add(a.cid)
    nextTry = Math.min(nextTry ?? until, until)
    return false
  })
  return {adds: free, held: held.size, nextTry}
}

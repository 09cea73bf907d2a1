/** Waiting: an abortable sleep and the capped doubling every retry loop of ctrnet uses. */

/** Resolves after ms, or at once when signal aborts (the timer keeps the process alive until then). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const done = () => {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const t = setTimeout(done, ms)
    signal?.addEventListener('abort', done, {once: true})
  })
}

export interface BackoffPolicy {
  firstMs: number
  capMs: number
}

/** The delay after the n-th failure in a row (n >= 1): firstMs, doubling, capped at capMs. */
export function backoffDelay(policy: BackoffPolicy, n: number): number {
  return Math.min(policy.capMs, policy.firstMs * 2 ** Math.min(Math.max(n, 1) - 1, 40))
}

/** A retry loop's wait: next() gives the delay of this failure and doubles the next one (up to the cap); reset() after a success. */
export class Backoff {
  private failures = 0

  constructor(private readonly policy: BackoffPolicy) {}

  next(): number {
    return backoffDelay(this.policy, ++this.failures)
  }

  reset(): void {
    this.failures = 0
  }
}

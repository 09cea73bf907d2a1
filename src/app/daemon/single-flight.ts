/**
 * Runs a refresh, never two at once: a call while one runs is answered by
 * that run's promise and makes exactly one more run after it (so a change
 * seen during a run is never missed), while `more()` holds. A run that
 * throws ends the series and rejects the callers' promise.
 */
export class SingleFlight {
  private running: Promise<void> | undefined
  private again = false

  constructor(
    private readonly fn: () => Promise<void>,
    private readonly more: () => boolean = () => true,
  ) {}

  run(): Promise<void> {
    if (this.running) {
      this.again = true
      return this.running
    }
    this.running = (async () => {
      do {
        this.again = false
        await this.fn()
      } while (this.again && this.more())
    })().finally(() => (this.running = undefined))
    return this.running
  }

  /** The run in flight, if any (resolves when the series ends, whatever its outcome). */
  settled(): Promise<void> {
    return (this.running ?? Promise.resolve()).catch(() => undefined)
  }
}

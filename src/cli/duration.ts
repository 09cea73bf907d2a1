import {CtrnetError} from '../sys/errors.js'

const UNITS: Record<string, number> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000}

/** A duration flag (`500ms`, `5s`, `2m`, `1h`, `0s`) in milliseconds; anything else is refused naming the flag. */
export function parseDuration(v: string, flag: string): number {
  const m = /^(\d{1,9})(ms|s|m|h)$/.exec(v)
  if (!m) throw new CtrnetError(flag, `${JSON.stringify(v)} is not a duration (a whole number with ms, s, m or h: 500ms, 5s, 2m)`)
  return Number(m[1]) * UNITS[m[2]!]!
}

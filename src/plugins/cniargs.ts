import {CniError, CNI_ERR} from './types.js'

/**
 * types.LoadArgs of the reference plugins: CNI_ARGS keys must be fields the
 * plugin knows (exact case), unless IgnoreUnknown=1/true is given.
 */
export function loadArgs(pairs: Array<[string, string]>, known: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  const ignore = pairs.some(([k, v]) => k === 'IgnoreUnknown' && /^(1|true)$/i.test(v))
  const unknown: string[] = []
  for (const [k, v] of pairs) {
    if (k === 'IgnoreUnknown') continue
    if (known.includes(k)) out[k] = v
    else if (!ignore) unknown.push(`${k}=${v}`)
  }
  if (unknown.length) throw new CniError(CNI_ERR.INTERNAL, `ARGS: unknown args ${JSON.stringify(unknown)}`)
  return out
}

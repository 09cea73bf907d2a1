import {CtrnetError, errorMessage} from '../../sys/errors.js'
import type {Settings} from '../settings.js'
import {PSEUDO_NETWORKS, type Warn, visible} from './common.js'

/** `network ls` (nerdctl's list.go). Reads the config dir only: no containerd, no kernel. */

export interface ListRow {
  /** First 12 characters of nerdctlID; empty for files without one */
  ID: string
  Name: string
  /** nerdctl's FormatLabels: k=v joined by commas (sorted here; Go's map order is random) */
  Labels: string
  fullId: string
  file: string
  driver: string
  labels?: Record<string, string>
}

export function formatLabels(labels: Record<string, string> | undefined): string {
  if (!labels) return ''
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',')
}

type RowFilter = (r: ListRow) => boolean

/** Filters `name=REGEX`, `label=K`, `label=K=V`, `driver=D`, `id=PREFIX`; all must match. */
export function parseListFilters(filters: string[]): RowFilter[] {
  const out: RowFilter[] = []
  for (const f of filters) {
    const eq = f.indexOf('=')
    if (eq < 0) throw new CtrnetError('network ls', `invalid filter ${JSON.stringify(f)}: expected KEY=VALUE (name, label, driver, id)`)
    const key = f.slice(0, eq)
    const value = f.slice(eq + 1)
    switch (key) {
      case 'name': {
        let re: RegExp
        try {
          re = new RegExp(value)
        } catch (err) {
          throw new CtrnetError('network ls', `invalid name filter ${JSON.stringify(value)}: ${errorMessage(err)}`)
        }
        out.push((r) => re.test(r.Name))
        break
      }
      case 'label': {
        const i = value.indexOf('=')
        const k = i < 0 ? value : value.slice(0, i)
        const v = i < 0 ? undefined : value.slice(i + 1)
        out.push((r) => !!r.labels && k in r.labels && (v === undefined || r.labels[k] === v))
        break
      }
      case 'driver':
        out.push((r) => r.driver === value)
        break
      case 'id':
        out.push((r) => r.fullId !== '' && r.fullId.startsWith(value))
        break
      default:
        throw new CtrnetError('network ls', `invalid filter ${JSON.stringify(key)} (use name, label, driver or id)`)
    }
  }
  return out
}

/** The rows of `network ls`: visible networks, then host and none when no filter is given. */
export function listRows(s: Pick<Settings, 'confDir' | 'namespace'>, filters: string[], warn: Warn): ListRow[] {
  const preds = parseListFilters(filters)
  const rows: ListRow[] = visible(s, warn).map((n) => ({
    ID: (n.nerdctlID ?? '').slice(0, 12),
    Name: n.name,
    Labels: formatLabels(n.nerdctlLabels),
    fullId: n.nerdctlID ?? '',
    file: n.file,
    driver: typeof n.conf.plugins[0]?.type === 'string' ? n.conf.plugins[0].type : '',
    labels: n.nerdctlLabels,
  }))
  if (preds.length > 0) return rows.filter((r) => preds.every((p) => p(r)))
  for (const name of PSEUDO_NETWORKS) rows.push({ID: '', Name: name, Labels: '', fullId: '', file: '', driver: name})
  return rows
}

import {CtrnetError, errorMessage} from '../sys/errors.js'
import type {CreateOptions} from '../netconf/render.js'
import {
  type CreatedNetwork,
  DEFAULT_NETWORK_NAME,
  type NetworkEntry,
  createNetworkLocked,
  listNetworks,
  removeNetworkFile,
  withStoreLock,
} from '../netconf/store.js'

/**
 * The network service behind `ctrnet network ...`, following nerdctl's
 * pkg/cmd/network (create.go, list.go, inspect.go, remove.go, prune.go).
 * Containerd is only reached (lazily, through src/containerd/usage.ts) by
 * inspect, rm and prune.
 */

export interface NetworkEnv {
  dir: string
  namespace: string
  address: string
  cacheDir: string
  /** Receives one-line warnings (unreadable conflists, ignored options) */
  warn?: (message: string) => void
}

export const PSEUDO_NETWORKS = ['host', 'none']

/** The service environment from the global flags; warnings go to stderr as one line each. */
export function networkEnv(flags: {'cni-netconfpath': string; namespace: string; address: string; 'cni-cachedir': string}): NetworkEnv {
  return {
    dir: flags['cni-netconfpath'],
    namespace: flags.namespace,
    address: flags.address,
    cacheDir: flags['cni-cachedir'],
    warn: (m) => process.stderr.write(`ctrnet: warning: ${m.replace(/\s*\n\s*/g, ' ')}\n`),
  }
}

function skipper(env: NetworkEnv) {
  return (file: string, err: Error) => {
    const msg = errorMessage(err)
    const why = msg.startsWith(file + ': ') ? msg.slice(file.length + 2) : msg
    env.warn?.(`skipping ${file}: ${why}`)
  }
}

function visible(env: NetworkEnv): NetworkEntry[] {
  return listNetworks(env.dir, env.namespace, skipper(env))
}

// ---------- create ----------

export async function createNetwork(env: NetworkEnv, opts: CreateOptions, {ignore = false} = {}): Promise<CreatedNetwork> {
  const res = await createNetworkLocked(env.dir, env.namespace, opts, {ignoreExisting: ignore, onSkip: skipper(env)})
  for (const w of res.warnings) env.warn?.(w)
  if (res.created && opts.ipamDriver === 'dhcp') {
    const {DHCP_SOCKET} = await import('../netconf/render.js')
    const {existsSync} = await import('node:fs')
    if (!existsSync(DHCP_SOCKET)) {
      env.warn?.(`cannot access dhcp socket ${JSON.stringify(DHCP_SOCKET)} (hint: start the CNI dhcp plugin as a daemon: dhcp daemon --socketpath=${DHCP_SOCKET} &)`)
    }
  }
  return res
}

// ---------- ls ----------

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
export function listRows(env: NetworkEnv, filters: string[] = []): ListRow[] {
  const preds = parseListFilters(filters)
  const rows: ListRow[] = visible(env).map((n) => ({
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

// ---------- lookup (ListNetworksMatch) ----------

interface Match {
  req: string
  nets: NetworkEntry[]
  pseudo?: boolean
}

/** The one network a request names, or undefined after recording nerdctl's error for none or several. */
function single(m: Match, errors: string[]): NetworkEntry | undefined {
  if (m.nets.length > 1) errors.push(`multiple IDs found with provided prefix: ${m.req}`)
  else if (m.nets.length === 0) errors.push(`no network found matching: ${m.req}`)
  return m.nets.length === 1 ? m.nets[0] : undefined
}

function pseudoEntry(name: string): NetworkEntry {
  const conf = {cniVersion: '1.0.0', name, plugins: [{type: 'nerdctl-pseudo'}]}
  return {name, file: '', bytes: Buffer.from(JSON.stringify(conf)), conf}
}

/** By exact name first, else by nerdctlID prefix. host/none only when allowed. */
function matchNetworks(all: NetworkEntry[], reqs: string[], allowPseudo: boolean): {matches: Match[]; errors: string[]} {
  const matches: Match[] = []
  const errors: string[] = []
  // nerdctl keys the requests by name: a request given twice counts once.
  for (const req of new Set(reqs)) {
    if (PSEUDO_NETWORKS.includes(req)) {
      if (!allowPseudo) errors.push(`pseudo network not allowed: ${req}`)
      else matches.push({req, nets: [pseudoEntry(req)], pseudo: true})
      continue
    }
    let nets = all.filter((n) => n.name === req)
    if (nets.length === 0) nets = all.filter((n) => n.nerdctlID !== undefined && req.length <= n.nerdctlID.length && n.nerdctlID.startsWith(req))
    matches.push({req, nets})
  }
  return {matches, errors}
}

// ---------- inspect ----------

export type InspectMode = 'dockercompat' | 'native'

function ipamConfig(conf: NetworkEntry['conf']): Array<Record<string, string>> {
  const out: Array<Record<string, string>> = []
  for (const p of conf.plugins) {
    const ranges = (p.ipam as {ranges?: unknown} | undefined)?.ranges
    if (!Array.isArray(ranges)) continue
    for (const set of ranges) {
      if (!Array.isArray(set)) continue
      for (const r of set as Array<Record<string, unknown>>) {
        if (!r || typeof r !== 'object') continue
        const c: Record<string, string> = {}
        if (typeof r.subnet === 'string' && r.subnet) c.Subnet = r.subnet
        if (typeof r.gateway === 'string' && r.gateway) c.Gateway = r.gateway
        if (typeof r.ipRange === 'string' && r.ipRange) c.IPRange = r.ipRange
        out.push(c)
      }
    }
  }
  return out
}

/**
 * A Go struct field with `omitempty`: left out of the JSON when empty, yet
 * still there for a --format template (`{{.Id}}` prints "" rather than failing).
 */
function goField(o: Record<string, unknown>, key: string, value: unknown, omit: boolean): void {
  Object.defineProperty(o, key, {value, enumerable: !omit, writable: true, configurable: true})
}

export interface InspectResult {
  results: unknown[]
  errors: string[]
}

async function containersOf(env: NetworkEnv, name: string) {
  const usage = await import('./usage.js')
  return usage.inspectContainers({address: env.address, namespace: env.namespace, cacheDir: env.cacheDir}, name)
}

export async function inspectNetworks(env: NetworkEnv, reqs: string[], mode: InspectMode): Promise<InspectResult> {
  if (mode !== 'dockercompat' && mode !== 'native') throw new CtrnetError('network inspect', `unknown mode ${JSON.stringify(mode)}`)
  const {matches, errors} = matchNetworks(visible(env), reqs, true)
  const results: unknown[] = []
  for (const m of matches) {
    const n = single(m, errors)
    if (!n) continue
    const containers = await containersOf(env, n.name)
    if (mode === 'native') {
      const list = Object.entries(containers).map(([id, c]) => ({Id: id, ...c}))
      const r: Record<string, unknown> = {CNI: JSON.parse(n.bytes.toString('utf8')), NerdctlID: n.nerdctlID ?? null}
      goField(r, 'NerdctlLabels', n.nerdctlLabels, n.nerdctlLabels === undefined)
      goField(r, 'File', n.file, n.file === '')
      r.Containers = list.length ? list : null
      results.push(r)
    } else {
      const r: Record<string, unknown> = {Name: n.name}
      goField(r, 'Id', n.nerdctlID ?? '', !n.nerdctlID)
      const cfg = ipamConfig(n.conf)
      const ipam: Record<string, unknown> = {}
      goField(ipam, 'Config', cfg, cfg.length === 0)
      r.IPAM = ipam
      r.Labels = n.nerdctlLabels ?? null
      r.Containers = containers
      results.push(r)
    }
  }
  return {results, errors}
}

// ---------- rm / prune ----------

async function usersOf(env: NetworkEnv, name: string) {
  const usage = await import('./usage.js')
  return usage.networkUsers({address: env.address, namespace: env.namespace, cacheDir: env.cacheDir}, name)
}

/**
 * Deletes the file and then the bridge link (nerdctl's fsRemove + clean), under
 * the lock. The link goes only when ctrnet/nerdctl created it for this network
 * (src/cni/bridges.ts: br-<id>, nerdctl0, or a name recorded at create) and no
 * other config (any namespace folder) names it; otherwise it stays, with one
 * warning line when it exists.
 */
async function removeOne(env: NetworkEnv, n: NetworkEntry, what: string): Promise<void> {
  const bridges = await import('../netconf/bridges.js')
  const devs = [...new Set(bridges.bridgeNamesOf(n.conf))]
  const owned = devs.map((dev) => bridges.ownsBridge(env.dir, n, dev))
  removeNetworkFile(what, n.file)
  if (devs.length === 0) return
  const {deleteLinkIfExists, isBridge, linkExists} = await import('../kernel/ip/link.js')
  const net = JSON.stringify(n.name)
  for (const [i, dev] of devs.entries()) {
    if (n.nerdctlID) bridges.forgetOwnedBridge(env.dir, n.nerdctlID, dev)
    if (!linkExists(dev)) continue
    const left = `network ${net}: bridge ${JSON.stringify(dev)}`
    if (!owned[i]) {
      env.warn?.(`${left} was not created by ctrnet for this network; left in place`)
      continue
    }
    const others = bridges.bridgeUsers(env.dir, dev, n.file)
    if (others.length > 0) {
      env.warn?.(`${left} is also used by ${bridges.describeUser(others[0]!)}; left in place`)
      continue
    }
    if (!isBridge(dev)) {
      env.warn?.(`${left} is not a bridge; left in place`)
      continue
    }
    try {
      await deleteLinkIfExists(dev)
    } catch (err) {
      throw new CtrnetError(what, `failed to remove network interface ${dev}: ${errorMessage(err)}`)
    }
  }
}

function goQuoteList(items: string[]): string {
  return '[' + items.map((s) => JSON.stringify(s)).join(' ') + ']'
}

export interface RemoveResult {
  removed: string[]
  errors: string[]
}

/**
 * `network rm`: each request by name or ID prefix. Refuses host/none, the
 * default bridge, files without nerdctlID, and networks in use by a running or
 * paused container. Prints (returns) each removed request as typed.
 */
export async function removeNetworks(env: NetworkEnv, reqs: string[]): Promise<RemoveResult> {
  return withStoreLock(env.dir, 'network rm', async () => {
    const {matches, errors} = matchNetworks(visible(env), reqs, false)
    const removed: string[] = []
    for (const m of matches) {
      const n = single(m, errors)
      if (!n) continue
      if (n.name === DEFAULT_NETWORK_NAME) {
        errors.push('cannot remove pre-defined network bridge')
        continue
      }
      if (n.file === '') {
        errors.push(`${m.req} is a pre-defined network and cannot be removed`)
        continue
      }
      if (n.nerdctlID === undefined) {
        errors.push(`${m.req} is managed outside nerdctl and cannot be removed`)
        continue
      }
      const users = await usersOf(env, n.name)
      if (users.length > 0) {
        errors.push(`network ${JSON.stringify(m.req)} is in use by container ${goQuoteList(users.map((u) => u.id))}`)
        continue
      }
      try {
        await removeOne(env, n, `network rm ${m.req}`)
        removed.push(m.req)
      } catch (err) {
        errors.push(err instanceof CtrnetError ? err.why : errorMessage(err))
      }
    }
    return {removed, errors}
  })
}

/** `network prune`: every unused nerdctl-made network except host, none and bridge. */
export async function pruneNetworks(env: NetworkEnv): Promise<RemoveResult> {
  return withStoreLock(env.dir, 'network prune', async () => {
    const removed: string[] = []
    const errors: string[] = []
    for (const n of visible(env)) {
      if ([...PSEUDO_NETWORKS, DEFAULT_NETWORK_NAME].some((k) => k.toLowerCase() === n.name.toLowerCase())) continue
      if (n.nerdctlID === undefined || n.file === '') continue
      if ((await usersOf(env, n.name)).length > 0) continue
      try {
        await removeOne(env, n, `network prune`)
        removed.push(n.name)
      } catch (err) {
        errors.push(`failed to remove network ${n.name}: ${err instanceof CtrnetError ? err.why : errorMessage(err)}`)
      }
    }
    return {removed, errors}
  })
}

import {createHash} from 'node:crypto'
import {lstatSync, readFileSync, readdirSync, realpathSync} from 'node:fs'
import {join} from 'node:path'
import Ajv2020Module from 'ajv/dist/2020.js'
import {parseCidr, parseIp, ipToBig} from '../kernel/ip/addr.js'
import {rewriteInPlace} from '../sys/atomic.js'
import {CtrnetError, errorMessage} from '../sys/errors.js'
import {FileLock} from '../sys/flock.js'

/*
 * nerdctl's hosts store, kept in step with ctrnet's attachments.
 *
 * Facts read in containerd/nerdctl at commit 8da504083f1543446a003f5870dec1bc12a75b85
 * (these files are the same in v2.3.5, 347782c2, but for an unrelated Stat helper in os.go):
 * - pkg/clientutil/client.go DataStore/getAddrHash: the data store is
 *   <dataRoot>/<addrHash>; dataRoot defaults to /var/lib/nerdctl (pkg/defaults/defaults_linux.go,
 *   rootless: $XDG_DATA_HOME/nerdctl); addrHash = first 8 hex chars of sha256 of the address with
 *   "unix://" trimmed and symlinks resolved (filepath.EvalSymlinks: the socket must exist), e.g.
 *   /run/containerd/containerd.sock -> 1935db59.
 * - pkg/dnsutil/hostsstore/hostsstore.go: the store is <dataStore>/etchosts/<namespace>/<id>/
 *   {hosts,meta.json}; one store (and one lock) per containerd namespace, entries are the
 *   container ids (directory names). meta.json is Go's json.Marshal of
 *   Meta{ID, Networks map[network name]*types100.Result, Hostname, ExtraHosts map[host]ip, Name,
 *   Domainname}, written on start by the OCI createRuntime hook (pkg/ocihook/ocihook.go:
 *   Networks[cniName] = that network's CNI 1.0 result, whose "ips"[].address is a CIDR like
 *   "10.4.1.2/24"; Hostname/Domainname/Name from the nerdctl/hostname, nerdctl/domainname,
 *   nerdctl/name annotations) and deleted on poststop (Release): a stopped container has a hosts
 *   file but no meta.json, and is neither listed nor updated.
 * - updateAllHosts: reads every meta.json of the namespace (an unreadable or malformed one is
 *   skipped with a log line); maps each IP of each network result (loopback and unspecified
 *   skipped) to its meta and network name; then for every entry with a meta rewrites its hosts
 *   file as: the lines outside the marked region (pkg/dnsutil/hostsstore/hosts.go
 *   parseHostsButSkipMarkedRegion: nerdctl trims them, turns tabs into spaces and drops blank
 *   lines, comments and 127.0.0.1/::1 lines; ctrnet keeps those bytes exactly), then
 *       # <nerdctl>
 *       127.0.0.1<TAB>localhost localhost.localdomain
 *       ::1<TAB><TAB>localhost localhost.localdomain
 *       <extra hosts: fmt "%-15s %s" ip, host>
 *       <one line per IP whose network is one of this container's networks, itself included:
 *        fmt "%-15s %s" ip, names joined by one space>
 *       # </nerdctl>
 *   Both lists come from Go map iteration, so nerdctl's order is random; ctrnet writes extra
 *   hosts by host name and peers by address (IPv4 first), and treats a block holding the same
 *   lines in another order as unchanged. Marker lines are recognized as nerdctl does: the line
 *   trimmed of spaces and tabs starts with "#" and the rest, trimmed, is "<nerdctl>"/"</nerdctl>".
 * - pkg/dnsutil/hostsstore/updater.go createLine(network, meta): names are
 *   [Hostname.Domainname if Domainname], then for each base of [Hostname, Name if set]:
 *   base, and base.<network> unless the network is "bridge" (the default network).
 * - Lock: store.New + fileStore.WithLock (pkg/store/filestore.go) -> pkg/internal/filesystem
 *   Lock (lock.go, lock_unix.go): os.Open of the directory <dataStore>/etchosts/<namespace>
 *   itself, then flock(2) LOCK_EX (blocking); meta.json is written by temp file + rename (0600),
 *   but the hosts file is written in place (filesystem.WriteFile: O_TRUNC + write, inode kept)
 *   because it is bind-mounted as the container's /etc/hosts: a rename would not reach it.
 *   So ctrnet rewrites it in place too (sys/atomic.ts rewriteInPlace), not by rename.
 */

/** A container attached to a network by anyone (nerdctl or ctrnet). */
export interface NetworkMember {
  namespace: string
  id: string
  /** base host names (nerdctl/name label, aliases), each also written as <name>.<network> */
  names: string[]
  /** addresses on that network, with or without a prefix length */
  ips: string[]
}

export interface HostsSyncReport {
  /** "<ns>/<id>" of every hosts file rewritten */
  updated: string[]
  unchanged: number
  failed: {container: string; reason: string}[]
}

/** nerdctl's name of the default network: its peers get no "<name>.bridge" entry. */
const NERDCTL_DEFAULT_NETWORK = 'bridge'
export const MARKER_BEGIN = '<nerdctl>'
export const MARKER_END = '</nerdctl>'
const HOSTS_FILE = 'hosts'
const META_FILE = 'meta.json'
const LOCK_TIMEOUT_MS = 10_000

/** The 8 hex chars nerdctl names the data store of a containerd address by. */
export function nerdctlAddrHash(address: string): string {
  const trimmed = address.startsWith('unix://') ? address.slice('unix://'.length) : address
  let resolved: string
  try {
    resolved = realpathSync(trimmed)
  } catch (err) {
    throw new CtrnetError('nerdctl hosts store', `cannot resolve the containerd address ${JSON.stringify(address)}: ${errorMessage(err)}`)
  }
  return createHash('sha256').update(resolved).digest('hex').slice(0, 8)
}

/** <dataRoot>/<addrHash>/etchosts, as nerdctl computes it (the address must exist: symlinks are resolved). */
export function nerdctlHostsStoreDir(dataRoot: string, address: string): string {
  return join(dataRoot, nerdctlAddrHash(address), 'etchosts')
}

// ---- meta.json ----

/** The part of nerdctl's hostsstore.Meta that the hosts lines are made of. */
export interface HostsMeta {
  hostname: string
  domainname: string
  name: string
  /** host -> ip, as given to --add-host */
  extraHosts: Record<string, string>
  /** network name -> canonical addresses of that network's result */
  networks: Map<string, string[]>
}

const nullableString = {type: ['string', 'null']}
const META_SCHEMA = {
  type: 'object',
  properties: {
    ID: nullableString,
    Hostname: nullableString,
    Domainname: nullableString,
    Name: nullableString,
    ExtraHosts: {type: ['object', 'null'], additionalProperties: {type: 'string'}},
    Networks: {
      type: ['object', 'null'],
      additionalProperties: {
        type: ['object', 'null'],
        properties: {
          ips: {
            type: ['array', 'null'],
            items: {type: ['object', 'null'], properties: {address: {type: 'string'}}, required: ['address']},
          },
        },
      },
    },
  },
} as const

type Validator = ((data: unknown) => boolean) & {errors?: Array<{instancePath: string; message?: string}> | null}
let metaValidator: Validator | undefined

function validateMeta(data: unknown): void {
  if (!metaValidator) {
    const mod = Ajv2020Module as unknown as {default?: unknown}
    const Ajv2020 = (mod.default ?? mod) as new (opts: object) => {compile(s: object): Validator}
    metaValidator = new Ajv2020({allErrors: false, strict: false}).compile(META_SCHEMA)
  }
  if (!metaValidator(data)) {
    const e = metaValidator.errors?.[0]
    throw new Error(`${e?.instancePath || '/'} ${e?.message ?? 'is invalid'}`)
  }
}

/** Parses meta.json as nerdctl's Go decoder would accept it; throws on anything it would refuse. */
export function parseHostsMeta(text: string): HostsMeta {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new Error(`not JSON: ${errorMessage(err)}`)
  }
  validateMeta(raw)
  const m = raw as {
    Hostname?: string | null
    Domainname?: string | null
    Name?: string | null
    ExtraHosts?: Record<string, string> | null
    Networks?: Record<string, {ips?: Array<{address: string} | null> | null} | null> | null
  }
  const networks = new Map<string, string[]>()
  for (const [net, res] of Object.entries(m.Networks ?? {})) {
    const ips: string[] = []
    for (const ipc of res?.ips ?? []) {
      if (!ipc) continue
      const c = parseCidr(ipc.address)
      if (!isLoopbackOrUnspecified(c.ip, c.v6)) ips.push(c.ip)
    }
    networks.set(net, ips)
  }
  return {
    hostname: m.Hostname ?? '',
    domainname: m.Domainname ?? '',
    name: m.Name ?? '',
    extraHosts: {...(m.ExtraHosts ?? {})},
    networks,
  }
}

function isLoopbackOrUnspecified(ip: string, v6: boolean): boolean {
  if (v6) return ip === '::1' || ip === '::'
  return ip.startsWith('127.') || ip === '0.0.0.0'
}

// ---- lines and blocks (pure) ----

/** nerdctl's createLine for a container of its own, on the network `net`. */
export function nerdctlLineNames(net: string, meta: Pick<HostsMeta, 'hostname' | 'domainname' | 'name'>): string[] {
  const out: string[] = []
  if (meta.domainname !== '') out.push(`${meta.hostname}.${meta.domainname}`)
  const bases = [meta.hostname]
  if (meta.name !== '') bases.push(meta.name)
  for (const b of bases) {
    out.push(b)
    if (net !== NERDCTL_DEFAULT_NETWORK) out.push(`${b}.${net}`)
  }
  return out
}

/** The same for a member ctrnet attached: each given name, then name.<network> (not on "bridge"). */
export function memberLineNames(net: string, names: string[]): string[] {
  const out: string[] = []
  for (const n of names) {
    out.push(n)
    if (net !== NERDCTL_DEFAULT_NETWORK) out.push(`${n}.${net}`)
  }
  return [...new Set(out)]
}

/** A host name that can stand in a hosts file line: no blank, no comment, no control character. */
const HOST_NAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$/

/** Go's fmt "%-15s %s". */
function hostsLine(ip: string, names: string): string {
  return `${ip.padEnd(15)} ${names}\n`
}

export interface BlockPeer {
  /** canonical address */
  ip: string
  v6: boolean
  names: string[]
}

/** The whole marked block, markers included, each line ending in "\n". */
export function renderHostsBlock(extraHosts: Record<string, string>, peers: BlockPeer[]): string {
  let s = `# ${MARKER_BEGIN}\n127.0.0.1\tlocalhost localhost.localdomain\n::1\t\tlocalhost localhost.localdomain\n`
  for (const host of Object.keys(extraHosts).sort()) s += hostsLine(extraHosts[host], host)
  const sorted = [...peers].sort((a, b) => {
    if (a.v6 !== b.v6) return a.v6 ? 1 : -1
    const x = ipToBig(a.ip, a.v6)
    const y = ipToBig(b.ip, b.v6)
    return x < y ? -1 : x > y ? 1 : 0
  })
  for (const p of sorted) if (p.names.length > 0) s += hostsLine(p.ip, p.names.join(' '))
  return s + `# ${MARKER_END}\n`
}

/** nerdctl's marker test on one line (without its "\n"). */
function markerOf(line: string): 'begin' | 'end' | undefined {
  const l = line.replace(/\r$/, '').replace(/^[ \t]+|[ \t]+$/g, '')
  if (!l.startsWith('#')) return undefined
  const com = l.slice(1).replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, '')
  return com === MARKER_BEGIN ? 'begin' : com === MARKER_END ? 'end' : undefined
}

/**
 * The marked regions of a hosts file, as [start, end) offsets of whole lines: from a begin
 * marker line through the next end marker line (or to the end of the file, as nerdctl skips).
 * `content` is a latin1 string (one char per byte), so offsets are byte offsets.
 */
function markedRegions(content: string): Array<[number, number]> {
  const regions: Array<[number, number]> = []
  let start: number | undefined
  let pos = 0
  while (pos < content.length) {
    const nl = content.indexOf('\n', pos)
    const end = nl === -1 ? content.length : nl + 1
    const m = markerOf(content.slice(pos, nl === -1 ? content.length : nl))
    if (start === undefined && m === 'begin') start = pos
    else if (start !== undefined && m === 'end') {
      regions.push([start, end])
      start = undefined
    }
    pos = end
  }
  if (start !== undefined) regions.push([start, content.length])
  return regions
}

function sortedLines(block: string): string[] {
  return block.split('\n').sort()
}

/**
 * The hosts file with `block` in place of nerdctl's marked region: bytes outside the markers
 * are kept as they are (a later marked region is dropped; with no region the block is
 * appended, after a "\n" when the file does not end with one). undefined when the file's
 * one region already holds the same lines, in any order (nerdctl's own order is random).
 */
export function spliceHostsBlock(file: Buffer, block: string): Buffer | undefined {
  const content = file.toString('latin1')
  const regions = markedRegions(content)
  const blockBytes = Buffer.from(block, 'utf8')
  if (regions.length === 1) {
    const [s, e] = regions[0]
    const current = content.slice(s, e)
    const a = sortedLines(current.endsWith('\n') ? current : current + '\n')
    const b = sortedLines(blockBytes.toString('latin1'))
    if (a.length === b.length && a.every((l, i) => l === b[i])) return undefined
  }
  if (regions.length === 0) {
    const sep = content.length > 0 && !content.endsWith('\n') ? Buffer.from('\n') : Buffer.alloc(0)
    return Buffer.concat([file, sep, blockBytes])
  }
  const parts: Buffer[] = [file.subarray(0, regions[0][0]), blockBytes]
  let pos = regions[0][1]
  for (const [s, e] of regions.slice(1)) {
    parts.push(file.subarray(pos, s))
    pos = e
  }
  parts.push(file.subarray(pos))
  return Buffer.concat(parts)
}

// ---- the plan of one namespace (pure) ----

export interface StoreEntry {
  id: string
  meta: HostsMeta
}

/**
 * For each nerdctl container of one namespace: the block nerdctl would write if it knew the
 * members ctrnet attached. Members of other namespaces are left out, as nerdctl lists only
 * the containers of its own namespace (and a network name is per namespace).
 */
export function planNamespaceBlocks(
  namespace: string,
  entries: StoreEntry[],
  members: Map<string, NetworkMember[]>,
): {blocks: Map<string, string>; bad: {container: string; reason: string}[]} {
  const bad: {container: string; reason: string}[] = []
  // ip -> [network, names, v6]: nerdctl's own containers first (as nerdctl writes them) ...
  const byIp = new Map<string, {net: string; names: string[]; v6: boolean}>()
  for (const e of entries) {
    for (const [net, ips] of e.meta.networks) {
      for (const ip of ips) byIp.set(ip, {net, names: nerdctlLineNames(net, e.meta), v6: parseIp(ip).v6})
    }
  }
  // ... then what ctrnet knows: an address nerdctl already lists keeps nerdctl's line.
  const extraNets = new Map<string, Set<string>>()
  for (const [net, list] of [...members.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    for (const m of list) {
      if (m.namespace !== namespace) continue
      let set = extraNets.get(m.id)
      if (!set) extraNets.set(m.id, (set = new Set()))
      set.add(net)
      const names = m.names.filter((n) => HOST_NAME.test(n))
      for (const n of m.names) {
        if (!HOST_NAME.test(n)) bad.push({container: `${namespace}/${m.id}`, reason: `name ${JSON.stringify(n)} on ${net} not written: not a host name`})
      }
      for (const text of m.ips) {
        let p: {v6: boolean; ip: string}
        try {
          p = text.includes('/') ? parseCidr(text) : parseIp(text)
        } catch (err) {
          bad.push({container: `${namespace}/${m.id}`, reason: `address on ${net} not written: ${errorMessage(err)}`})
          continue
        }
        if (isLoopbackOrUnspecified(p.ip, p.v6) || byIp.has(p.ip)) continue
        byIp.set(p.ip, {net, names: memberLineNames(net, names), v6: p.v6})
      }
    }
  }
  const blocks = new Map<string, string>()
  for (const e of entries) {
    const mine = new Set([...e.meta.networks.keys(), ...(extraNets.get(e.id) ?? [])])
    const peers: BlockPeer[] = []
    for (const [ip, v] of byIp) if (mine.has(v.net)) peers.push({ip, v6: v.v6, names: v.names})
    blocks.set(e.id, renderHostsBlock(e.meta.extraHosts, peers))
  }
  return {blocks, bad}
}

// ---- the store on disk ----

function subdirs(dir: string): string[] {
  return readdirSync(dir, {withFileTypes: true})
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()
}

function readIfExists(path: string): Buffer | undefined {
  try {
    if (lstatSync(path).isSymbolicLink()) throw new Error(`${path} is a symlink`)
    return readFileSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/**
 * For every nerdctl container in the store (meta.json present): its networks = those in its
 * meta plus those where `members` lists it; its managed block = the lines nerdctl itself would
 * write for all members (from meta.json of nerdctl peers AND from `members`) of those networks.
 * The block is rewritten only when it changes, bytes outside nerdctl's markers untouched, in
 * place (the file is bind-mounted: see the note at the top) under nerdctl's own lock, one
 * namespace at a time. Never writes anywhere but the store. A store that does not exist
 * (nerdctl never ran) is an empty report.
 */
export async function syncNerdctlHosts(storeDir: string, members: Map<string, NetworkMember[]>): Promise<HostsSyncReport> {
  const report: HostsSyncReport = {updated: [], unchanged: 0, failed: []}
  let namespaces: string[]
  try {
    namespaces = subdirs(storeDir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return report
    throw new CtrnetError('nerdctl hosts store', `cannot list ${storeDir}: ${errorMessage(err)}`)
  }
  for (const ns of namespaces) {
    const nsDir = join(storeDir, ns)
    let lock: FileLock
    try {
      lock = await FileLock.acquireDir(nsDir, {timeoutMs: LOCK_TIMEOUT_MS})
    } catch (err) {
      report.failed.push({container: `${ns}/*`, reason: `cannot lock ${nsDir}: ${errorMessage(err)}`})
      continue
    }
    try {
      syncNamespace(ns, nsDir, members, report)
    } finally {
      lock.release()
    }
  }
  return report
}

function syncNamespace(ns: string, nsDir: string, members: Map<string, NetworkMember[]>, report: HostsSyncReport): void {
  const entries: StoreEntry[] = []
  let ids: string[]
  try {
    ids = subdirs(nsDir)
  } catch (err) {
    report.failed.push({container: `${ns}/*`, reason: `cannot list ${nsDir}: ${errorMessage(err)}`})
    return
  }
  for (const id of ids) {
    let text: Buffer | undefined
    try {
      text = readIfExists(join(nsDir, id, META_FILE))
      if (text === undefined) continue // stopped: nerdctl removed its meta.json
      entries.push({id, meta: parseHostsMeta(text.toString('utf8'))})
    } catch (err) {
      report.failed.push({container: `${ns}/${id}`, reason: `${META_FILE}: ${errorMessage(err)}`})
    }
  }
  const {blocks, bad} = planNamespaceBlocks(ns, entries, members)
  report.failed.push(...bad)
  for (const [id, block] of blocks) {
    const path = join(nsDir, id, HOSTS_FILE)
    try {
      const current = readIfExists(path)
      if (current === undefined) throw new Error('no hosts file')
      const next = spliceHostsBlock(current, block)
      if (next === undefined) {
        report.unchanged++
        continue
      }
      rewriteInPlace(path, next)
      report.updated.push(`${ns}/${id}`)
    } catch (err) {
      report.failed.push({container: `${ns}/${id}`, reason: `${HOSTS_FILE}: ${errorMessage(err)}`})
    }
  }
}

/**
 * Dumps and normalizes the kernel (and on-disk) state a CNI ADD/DEL leaves, for
 * a (host netns, container netns) pair, so two runs (reference plugins vs
 * ctrnet) can be compared with toEqual().
 *
 * Masked: random veth names (veth + 8 hex -> vethX), MAC addresses (except the
 * ones listed in keepMacs), IPv6 link-local addresses derived from them,
 * ifindexes / link-netnsid / bridge ids / timers, iptables counters and header
 * comments, and any caller-given strings (temp dirs, netns names).
 * Empty iptables tables (no rules, no user chains, ACCEPT policies) are dropped:
 * iptables-nft creates them as a side effect of listing.
 */
import {createHash} from 'node:crypto'
import {existsSync, lstatSync, readdirSync, readFileSync} from 'node:fs'
import {join, relative} from 'node:path'
import {run} from '../../src/sys/exec.js'

export interface DumpOptions {
  hostNs: string
  /** Container netns name(s) (under /var/run/netns). A vanished one is dumped as null. */
  containerNs?: string | string[]
  /** host-local dataDir(s) to list (every file below, with mode and content). */
  dataDirs?: string[]
  /** Other files to include when present (e.g. /run/cni/tuning/<cid>_eth0.json). */
  files?: string[]
  /** MACs that are deterministic (set by config) and stay unmasked. */
  keepMacs?: string[]
  /** Extra sysctl names (dotted, e.g. net.ipv4.conf.eth0.rp_filter). */
  extraSysctls?: {container?: string[]; host?: string[]}
  /** Literal strings to replace everywhere (e.g. [[tmpDir, '<TMP>']]). */
  replace?: Array<[string, string]>
}

export interface NsState {
  links: Array<Record<string, unknown>>
  addrs: Array<Record<string, unknown>>
  routes: Array<Record<string, unknown>>
  sysctls: Record<string, string>
}

export interface HostState extends NsState {
  bridgePorts: Array<Record<string, unknown>>
  bridgeVlans: unknown
  iptables: Record<string, IptTable>
  ip6tables: Record<string, IptTable>
}

export interface IptTable {
  [chain: string]: {policy: string; rules: string[]}
}

export interface KernelState {
  host: HostState
  containers: Record<string, NsState | null>
  files: Record<string, {mode: string; content: string}>
}

const LINK_KEYS = [
  'ifname',
  'flags',
  'mtu',
  'qdisc',
  'master',
  'operstate',
  'link_type',
  'address',
  'broadcast',
  'promiscuity',
  'allmulti',
  'txqlen',
  'inet6_addr_gen_mode',
  'num_tx_queues',
  'num_rx_queues',
]
const BRIDGE_INFO_KEYS = [
  'forward_delay',
  'hello_time',
  'max_age',
  'ageing_time',
  'stp_state',
  'priority',
  'vlan_filtering',
  'vlan_protocol',
  'vlan_default_pvid',
  'mcast_snooping',
  'nf_call_iptables',
  'nf_call_ip6tables',
  'group_fwd_mask',
]
const SLAVE_KEYS = [
  'state',
  'priority',
  'cost',
  'hairpin',
  'guard',
  'root_block',
  'fastleave',
  'learning',
  'flood',
  'proxy_arp',
  'mcast_flood',
  'bcast_flood',
  'neigh_suppress',
  'isolated',
  'locked',
]
const PORT_KEYS = ['ifname', 'master', 'state', 'mtu', 'flags', ...SLAVE_KEYS.filter((k) => k !== 'state')]
const ROUTE_DROP = new Set(['expires', 'cache'])
const ADDR_DROP = new Set(['valid_life_time', 'preferred_life_time', 'tentative'])

function pick(o: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k]
  return out
}

async function ipJson(ns: string, args: string[]): Promise<Array<Record<string, unknown>>> {
  const r = await run('ip', ['-n', ns, '-j', ...args])
  const t = r.stdout.trim()
  return t ? (JSON.parse(t) as Array<Record<string, unknown>>) : []
}

function normLink(l: Record<string, unknown>): Record<string, unknown> {
  const out = pick(l, LINK_KEYS)
  const li = l.linkinfo as Record<string, unknown> | undefined
  if (li) {
    const info: Record<string, unknown> = {kind: li.info_kind}
    const data = li.info_data as Record<string, unknown> | undefined
    if (data && li.info_kind === 'bridge') info.data = pick(data, BRIDGE_INFO_KEYS)
    else if (data && li.info_kind !== 'veth') info.data = data
    if (li.info_slave_kind) {
      info.slaveKind = li.info_slave_kind
      const sd = li.info_slave_data as Record<string, unknown> | undefined
      if (sd) info.slaveData = li.info_slave_kind === 'bridge' ? pick(sd, SLAVE_KEYS) : sd
    }
    out.linkinfo = info
  }
  return out
}

function normAddrs(rows: Array<Record<string, unknown>>): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = []
  for (const r of rows) {
    for (const a of (r.addr_info as Array<Record<string, unknown>> | undefined) ?? []) {
      const x: Record<string, unknown> = {dev: r.ifname}
      for (const [k, v] of Object.entries(a)) if (!ADDR_DROP.has(k)) x[k] = v
      out.push(x)
    }
  }
  return out
}

function normRoutes(rows: Array<Record<string, unknown>>, family: string): Array<Record<string, unknown>> {
  return rows.map((r) => {
    const x: Record<string, unknown> = {family}
    for (const [k, v] of Object.entries(r)) if (!ROUTE_DROP.has(k)) x[k] = v
    if (Array.isArray(x.flags) && x.flags.length === 0) delete x.flags
    return x
  })
}

/** Reads sysctls inside a netns with one process; absent keys are left out. */
async function readSysctls(ns: string, names: string[]): Promise<Record<string, string>> {
  const uniq = [...new Set(names)].sort()
  if (uniq.length === 0) return {}
  const files = uniq.map((n) => `/proc/sys/${n.replaceAll('.', '/')}`)
  const r = await run('ip', ['netns', 'exec', ns, 'grep', '-H', '-s', '.', ...files], {allowFailure: true})
  const out: Record<string, string> = {}
  for (const line of r.stdout.split('\n')) {
    const i = line.indexOf(':')
    if (i < 0) continue
    const key = line.slice('/proc/sys/'.length, i).replaceAll('/', '.')
    out[key] = line.slice(i + 1).trim()
  }
  return out
}

/** Parses iptables-save output into tables -> chains (sorted) -> rules (in order). */
export function parseIptablesSave(text: string): Record<string, IptTable> {
  const tables: Record<string, IptTable> = {}
  let cur: IptTable | undefined
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#') || line === 'COMMIT') continue
    if (line.startsWith('*')) {
      cur = tables[line.slice(1)] = {}
      continue
    }
    if (!cur) continue
    if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(/\s+/)
      cur[name!] = {policy: policy ?? '-', rules: []}
      continue
    }
    const m = /^(?:\[\d+:\d+\]\s+)?-A\s+(\S+)\s*(.*)$/.exec(line)
    if (m) {
      const chain = (cur[m[1]!] ??= {policy: '-', rules: []})
      chain.rules.push(m[2]!.replace(/\s+-c\s+\d+\s+\d+/, ''))
    }
  }
  const out: Record<string, IptTable> = {}
  for (const name of Object.keys(tables).sort()) {
    const t = tables[name]!
    const empty = Object.values(t).every((c) => c.rules.length === 0 && (c.policy === 'ACCEPT' || c.policy === '-'))
    const onlyBuiltin = Object.values(t).every((c) => c.policy !== '-')
    if (empty && onlyBuiltin) continue
    const sorted: IptTable = {}
    for (const c of Object.keys(t).sort()) sorted[c] = t[c]!
    out[name] = sorted
  }
  return out
}

function listFiles(root: string, into: Record<string, {mode: string; content: string}>, label: string): void {
  if (!existsSync(root)) return
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name)
      const st = lstatSync(p)
      const key = `${label}/${relative(root, p)}`
      if (st.isDirectory()) {
        into[key + '/'] = {mode: (st.mode & 0o7777).toString(8), content: ''}
        walk(p)
      } else {
        into[key] = {mode: (st.mode & 0o7777).toString(8), content: st.isFile() ? readFileSync(p, 'utf8') : '<special>'}
      }
    }
  }
  walk(root)
}

async function dumpNs(ns: string, sysctlNames: (links: string[]) => string[]): Promise<NsState> {
  const [links, addrs, r4, r6] = await Promise.all([
    ipJson(ns, ['-d', 'link', 'show']),
    ipJson(ns, ['addr', 'show']),
    ipJson(ns, ['-4', 'route', 'show', 'table', 'all']),
    ipJson(ns, ['-6', 'route', 'show', 'table', 'all']),
  ])
  const names = links.map((l) => String(l.ifname))
  return {
    links: links.map(normLink),
    addrs: normAddrs(addrs),
    routes: [...normRoutes(r4, 'inet'), ...normRoutes(r6, 'inet6')],
    sysctls: await readSysctls(ns, sysctlNames(names)),
  }
}

const MAC_RE = /\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b/gi
const VETH_RE = /\bveth[0-9a-f]{8}\b/g
const LL_RE = /^fe80::[0-9a-f:]*[0-9a-f]$/i
const FIXED_MACS = new Set(['00:00:00:00:00:00', 'ff:ff:ff:ff:ff:ff', '01:80:c2:00:00:00'])

/** Applies the masks to every string in a value (deep) and sorts unordered lists. */
export function maskValue(v: unknown, opts: {keepMacs?: string[]; replace?: Array<[string, string]>} = {}): unknown {
  const keep = new Set([...(opts.keepMacs ?? []).map((m) => m.toLowerCase()), ...FIXED_MACS])
  const str = (s: string): string => {
    for (const [a, b] of opts.replace ?? []) if (a) s = s.split(a).join(b)
    s = s.replace(VETH_RE, 'vethX')
    s = s.replace(MAC_RE, (m) => (keep.has(m.toLowerCase()) ? m : 'MAC'))
    if (LL_RE.test(s)) s = 'fe80::X'
    return s
  }
  const walk = (x: unknown): unknown => {
    if (typeof x === 'string') return str(x)
    if (Array.isArray(x)) return x.map(walk)
    if (x && typeof x === 'object') {
      const o: Record<string, unknown> = {}
      for (const [k, val] of Object.entries(x)) o[str(k)] = walk(val)
      return o
    }
    return x
  }
  return walk(v)
}

const stable = (x: unknown) => JSON.stringify(x)
function sortRows<T>(rows: T[]): T[] {
  return [...rows].sort((a, b) => (stable(a) < stable(b) ? -1 : stable(a) > stable(b) ? 1 : 0))
}

function finishNs<T extends NsState>(s: T): T {
  s.links = sortRows(s.links)
  s.addrs = sortRows(s.addrs)
  s.routes = sortRows(s.routes)
  return s
}

/**
 * The kernel publishes carrier changes (operstate, IFF_RUNNING i.e. NO-CARRIER,
 * the `linkdown` route flag, IPv6 link-local addresses) from its linkwatch work,
 * up to a second after the change. A link is settled when its operstate agrees
 * with its carrier (LOWER_UP).
 */
function linkSettled(l: Record<string, unknown>): boolean {
  const flags = (l.flags as string[] | undefined) ?? []
  if (!flags.includes('UP')) return true
  const carrier = flags.includes('LOWER_UP')
  const oper = String(l.operstate)
  const operUp = oper === 'UP' || oper === 'UNKNOWN'
  return carrier === operUp && (carrier ? !flags.includes('NO-CARRIER') : flags.includes('NO-CARRIER') || oper !== 'UP')
}

async function linksSnapshot(namespaces: string[]): Promise<{settled: boolean; key: string}> {
  const all = await Promise.all(
    namespaces.filter((n) => existsSync(`/var/run/netns/${n}`)).map((n) => ipJson(n, ['link', 'show'])),
  )
  const links = all.flat()
  return {
    settled: links.every(linkSettled),
    key: JSON.stringify(all.map((ls) => ls.map((l) => [l.ifname, l.flags, l.operstate]))),
  }
}

/** Waits (bounded) until every link's operstate agrees with its carrier. */
export async function waitSettled(namespaces: string[], maxMs = 3000): Promise<string> {
  const deadline = Date.now() + maxMs
  let snap = await linksSnapshot(namespaces)
  while (!snap.settled && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50))
    snap = await linksSnapshot(namespaces)
  }
  return snap.key
}

/**
 * Dumps the normalized state of a host netns and its container netns, once the
 * links have settled (and again if they changed while dumping).
 */
export async function dumpState(opts: DumpOptions): Promise<KernelState> {
  const containerNs = opts.containerNs === undefined ? [] : Array.isArray(opts.containerNs) ? opts.containerNs : [opts.containerNs]
  const nss = [opts.hostNs, ...containerNs]
  for (let attempt = 0; ; attempt++) {
    const before = await waitSettled(nss)
    const state = await dumpOnce(opts, containerNs)
    const after = await linksSnapshot(nss)
    if ((after.settled && after.key === before) || attempt >= 5) return state
  }
}

async function dumpOnce(opts: DumpOptions, containerNs: string[]): Promise<KernelState> {
  const hostRaw = await dumpNs(opts.hostNs, () => [])
  const bridges = (await ipJson(opts.hostNs, ['-d', 'link', 'show', 'type', 'bridge'])).map((l) => String(l.ifname))
  const hostSysctls = [
    'net.ipv4.ip_forward',
    'net.ipv6.conf.all.forwarding',
    'net.ipv4.conf.all.route_localnet',
    ...bridges.flatMap((b) => [
      `net.ipv4.conf.${b}.route_localnet`,
      `net.ipv4.conf.${b}.forwarding`,
      `net.ipv6.conf.${b}.accept_ra`,
      `net.ipv6.conf.${b}.forwarding`,
      `net.ipv6.conf.${b}.disable_ipv6`,
    ]),
    ...(opts.extraSysctls?.host ?? []),
  ]
  const [sysctls, ports, vlans, ipt4, ipt6] = await Promise.all([
    readSysctls(opts.hostNs, hostSysctls),
    run('bridge', ['-n', opts.hostNs, '-j', '-d', 'link', 'show']).then((r) =>
      r.stdout.trim() ? (JSON.parse(r.stdout) as Array<Record<string, unknown>>) : [],
    ),
    run('bridge', ['-n', opts.hostNs, '-j', 'vlan', 'show']).then((r) => (r.stdout.trim() ? JSON.parse(r.stdout) : [])),
    run('ip', ['netns', 'exec', opts.hostNs, 'iptables-save']).then((r) => parseIptablesSave(r.stdout)),
    run('ip', ['netns', 'exec', opts.hostNs, 'ip6tables-save']).then((r) => parseIptablesSave(r.stdout)),
  ])
  const host: HostState = finishNs({
    ...hostRaw,
    sysctls,
    bridgePorts: sortRows(ports.map((p) => pick(p, PORT_KEYS))),
    bridgeVlans: vlans,
    iptables: ipt4,
    ip6tables: ipt6,
  })
  const containers: Record<string, NsState | null> = {}
  for (const [i, c] of containerNs.entries()) {
    const key = `c${i}`
    if (!existsSync(`/var/run/netns/${c}`)) {
      containers[key] = null
      continue
    }
    containers[key] = finishNs(
      await dumpNs(c, (links) => [
        'net.ipv4.ip_forward',
        'net.ipv6.conf.all.disable_ipv6',
        'net.ipv6.conf.default.disable_ipv6',
        ...links
          .filter((l) => l !== 'lo')
          .flatMap((l) => [
            `net.ipv4.conf.${l}.arp_notify`,
            `net.ipv6.conf.${l}.accept_dad`,
            `net.ipv6.conf.${l}.disable_ipv6`,
            `net.ipv6.conf.${l}.accept_ra`,
          ]),
        ...(opts.extraSysctls?.container ?? []),
      ]),
    )
  }
  const files: Record<string, {mode: string; content: string}> = {}
  for (const [i, d] of (opts.dataDirs ?? []).entries()) listFiles(d, files, `dataDir${i}`)
  for (const f of opts.files ?? []) {
    if (!existsSync(f)) continue
    const st = lstatSync(f)
    files[f] = {mode: (st.mode & 0o7777).toString(8), content: readFileSync(f, 'utf8')}
  }
  const masked = maskValue({host, containers, files}, opts) as KernelState
  // IPv6 local/anycast routes (table local) of a netns's own addresses come and
  // go with DAD and carrier timing; they are a function of the addresses, which
  // are compared themselves.
  const dropLL = (s: NsState) => {
    s.routes = s.routes.filter((r) => !(r.family === 'inet6' && (r.type === 'local' || r.type === 'anycast')))
  }
  dropLL(masked.host)
  for (const c of Object.values(masked.containers)) if (c) dropLL(c)
  finishNs(masked.host)
  masked.host.bridgePorts = sortRows(masked.host.bridgePorts)
  for (const c of Object.values(masked.containers)) if (c) finishNs(c)
  return masked
}

/**
 * A short list of differences between two states (or any JSON values):
 * `path: a=<..> b=<..>`. Rows (links/addrs/routes/ports/rules) are compared as
 * sets of JSON strings so one extra row does not shift every index.
 */
export function diffStates(a: unknown, b: unknown, labels: [string, string] = ['ref', 'ours']): string[] {
  const out: string[] = []
  const rec = (x: unknown, y: unknown, path: string) => {
    if (stable(x) === stable(y)) return
    if (Array.isArray(x) && Array.isArray(y)) {
      const xs = x.map(stable)
      const ys = y.map(stable)
      const onlyX = xs.filter((s) => !ys.includes(s))
      const onlyY = ys.filter((s) => !xs.includes(s))
      for (const s of onlyX) out.push(`${path}: only ${labels[0]}: ${s}`)
      for (const s of onlyY) out.push(`${path}: only ${labels[1]}: ${s}`)
      if (!onlyX.length && !onlyY.length) out.push(`${path}: same rows, different order/count`)
      return
    }
    if (x && y && typeof x === 'object' && typeof y === 'object') {
      const keys = [...new Set([...Object.keys(x), ...Object.keys(y)])].sort()
      for (const k of keys) rec((x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k], path ? `${path}.${k}` : k)
      return
    }
    out.push(`${path}: ${labels[0]}=${stable(x)} ${labels[1]}=${stable(y)}`)
  }
  rec(a, b, '')
  return out
}

/** libcni/plugins chain names: CNI-<24 hex> (bridge masq), CNI-DN-<21 hex> (portmap). */
export function chainNames(network: string, containerId: string): {masq: string; dnat: string} {
  const h = createHash('sha512').update(network + containerId).digest('hex')
  return {masq: `CNI-${h.slice(0, 24)}`, dnat: `CNI-DN-${h.slice(0, 21)}`}
}

/**
 * What an attachment left behind after DEL: veths, container links, lease files
 * naming the container, iptables chains/rules naming it or its IPs, extra files.
 */
export function leftovers(
  s: KernelState,
  att: {network: string; containerId: string; ips?: string[]; ifName?: string},
): string[] {
  const out: string[] = []
  const {masq, dnat} = chainNames(att.network, att.containerId)
  for (const l of s.host.links) if (String(l.ifname).startsWith('veth')) out.push(`host link ${l.ifname}`)
  for (const [k, c] of Object.entries(s.containers)) {
    if (!c) continue
    for (const l of c.links) if (l.ifname !== 'lo') out.push(`${k} link ${l.ifname}`)
    for (const a of c.addrs) if (a.dev !== 'lo') out.push(`${k} addr ${a.local}`)
  }
  const bareIps = (att.ips ?? []).map((ip) => ip.split('/')[0]!)
  for (const [fam, tables] of Object.entries({iptables: s.host.iptables, ip6tables: s.host.ip6tables})) {
    for (const [t, chains] of Object.entries(tables)) {
      for (const [c, {rules}] of Object.entries(chains)) {
        if (c === masq || c === dnat) out.push(`${fam} ${t} chain ${c}`)
        for (const r of rules) {
          if (
            r.includes(att.containerId) ||
            r.includes(masq) ||
            r.includes(dnat) ||
            bareIps.some((ip) => new RegExp(`(^|[\\s:])${ip.replace(/[.]/g, '\\.')}(/\\d+)?([\\s:]|$)`).test(r))
          ) {
            out.push(`${fam} ${t} ${c}: ${r}`)
          }
        }
      }
    }
  }
  for (const [f, {content}] of Object.entries(s.files)) {
    if (f.startsWith('dataDir') && content.split(/\r?\n/)[0] === att.containerId) out.push(`lease file ${f}`)
    if (!f.startsWith('dataDir')) out.push(`file ${f}`)
  }
  return out
}

/**
 * Security issue, item 3: the injection corpus. Every value a request
 * carries (capability args, CNI_ARGS, the conflist fields of the embedded
 * plugins, CLI flags) is fed hostile strings: a newline followed by
 * `--flush`, ` -j ACCEPT`, ` ! -s 10.91.0.7`, quotes, `#`, NUL, 5000
 * characters, unicode (U+2028, full-width look-alikes), and values of the
 * wrong type or out of range. Each must be refused before any kernel work:
 * a non-zero exit, exactly one stderr line `ctrnet: ...` that names the
 * field, and nothing changed.
 *
 * One lab for the whole file: a throwaway "host" netns (containerd-harness's
 * HostNs: the CLI runs in it with a private mount namespace and a temp dir
 * over /var/lib) with its own config, cache, lease and tuning dirs, a dummy
 * "uplink" with addresses and routes, and sentinel rules in every iptables
 * and ip6tables table (built-in and user chains, `-m comment --comment
 * sentinel`) and an nft table. After each case: a snapshot of iptables-save
 * and ip6tables-save (no counters, no comment lines), `nft -s list ruleset`,
 * `ip -o link`, `ip -o addr`, `ip route`, `ip -6 route` (host netns, and the
 * container netns the ADD targets), and every file and dir of the lab's dirs
 * must equal the baseline byte for byte, and the sentinels must be there. A
 * case that changed anything is reported, then the lab is reset to the
 * baseline so the next case is judged on its own. (The "before" of every
 * case is that verified baseline.) To keep the ~500 cases fast, the cases of
 * one field run side by side and the lab is compared once after them; any
 * change, lost sentinel or wrong refusal makes them run again one at a time
 * with a snapshot after each, so every verdict is a case's own.
 *
 * `network connect -p` runs against a real containerd + runc on a private
 * socket, as containerd.test.ts does, in the same host netns.
 *
 * The valid control (the same chain with valid values: ADD then DEL) runs
 * after the corpus, in the same lab: a refusal is not a broken setup.
 */
import {spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {CLI, HostNs, PrivateContainerd, ROOT} from './containerd-harness.js'
import {addDummy, createNetns, destroyNetns, netnsPath, useNetnsCleanup} from '../helpers/netns.js'
import {nerdctlChain} from './reliability-lib.js'
import {PAYLOADS} from '../fixtures/injection-payloads.js'

useNetnsCleanup(afterAll)

// ---- lab ------------------------------------------------------------------

const NET = 'inj' // the lab's network (valid conflist; capability, CNI_ARGS and flag cases)
const BRIDGE = 'br-inj'
const SUBNET = '10.91.0.0/24'
const HNET = 'injh' // the per-case conflist of the conflist-field cases
const HBRIDGE = 'br-injh'
const CNET = 'injc' // the name network create cases try to create
const CTRD_NS = 'injx' // containerd namespace of the connect cases
const CONNECT_NET = 'injnet'
const UPLINK = 'inj-up0'

let host: HostNs
let ctr = '' // the container netns cni add targets
let tuningDir = ''
let cwdDir = ''
let lockDir = '' // outside the lab's dir: the private iptables lock, the per-case conflist dirs, the private build
let cliEnv: NodeJS.ProcessEnv = {}
let cliPath = CLI

/**
 * A private copy of the build (bin, dist, protos, package.json, manifest;
 * node_modules linked), taken at the start: other work rebuilding dist/ in
 * the meantime cannot pull the CLI from under the corpus. CTRNET_TEST_CLI,
 * when set, is used as it is.
 */
function privateBuild(into: string): string {
  if (process.env.CTRNET_TEST_CLI) return CLI
  const root = join(into, 'build')
  mkdirSync(root)
  for (const d of ['bin', 'dist', 'protos']) if (existsSync(join(ROOT, d))) cpSync(join(ROOT, d), join(root, d), {recursive: true})
  for (const f of ['package.json', 'oclif.manifest.json']) cpSync(join(ROOT, f), join(root, f))
  symlinkSync(join(ROOT, 'node_modules'), join(root, 'node_modules'))
  if (!existsSync(join(root, 'dist', 'bundle', 'cli.cjs'))) throw new Error('no build: run `npm run build` first')
  return join(root, 'bin', 'run.js')
}

interface Res {
  code: number
  stdout: string
  stderr: string
}

function exec(file: string, args: string[], opts: {input?: string; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number} = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    child.stdout.on('data', (d: string) => (stdout += d))
    child.stderr.on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000)
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({code: code ?? 128, stdout, stderr: signal ? `${stderr}<killed by ${signal}>` : stderr})
    })
    child.stdin.on('error', () => {})
    child.stdin.end(opts.input ?? '')
  })
}

/** Runs argv in the lab's host netns; throws when it fails (a snapshot that cannot be taken fails the case). */
async function inHost(argv: string[], opts: {input?: string; allowFailure?: boolean} = {}): Promise<Res> {
  const r = await exec('ip', ['netns', 'exec', host.name, ...argv], {input: opts.input})
  if (r.code !== 0 && !opts.allowFailure) throw new Error(`${argv.join(' ')} in ${host.name} -> exit ${r.code}: ${r.stderr.trim()}`)
  return r
}

async function inNetns(ns: string, argv: string[]): Promise<Res> {
  const r = await exec('ip', ['netns', 'exec', ns, ...argv])
  if (r.code !== 0) throw new Error(`${argv.join(' ')} in ${ns} -> exit ${r.code}: ${r.stderr.trim()}`)
  return r
}

/**
 * The CLI inside the lab's host netns, as HostNs.cli runs it (private mount
 * namespace, the lab's varlib over /var/lib), with the lab's config and cache
 * dirs, a private iptables lock, no colour, and a cwd inside the lab (a
 * relative path a plugin might use lands in the snapshot, not the repo).
 */
let cliRuns = 0
function cli(args: string[], opts: {address?: string; namespace?: string; netconf?: string} = {}): Promise<Res> {
  cliRuns++
  const global = ['--cni-netconfpath', opts.netconf ?? host.netconf, '--cni-cachedir', host.cache]
  if (opts.address) global.push('-a', opts.address)
  if (opts.namespace) global.push('-n', opts.namespace)
  return exec(
    'ip',
    ['netns', 'exec', host.name, 'sh', '-c', 'mount --bind "$0" /var/lib && exec "$@"', host.varlib, process.execPath, cliPath, ...args, ...global],
    {env: cliEnv, cwd: cwdDir, timeoutMs: 120_000},
  )
}

type Conf = {cniVersion: string; name: string; plugins: Array<Record<string, unknown>>}

/** nerdctl's chain (bridge, portmap, firewall, tuning) with private dirs and the capabilities the corpus feeds. */
function chain(name: string, bridge: string, subnet: string, gateway: string): Conf {
  const c = nerdctlChain(name, bridge, subnet, gateway, host.dataDir) as Conf
  c.plugins[0]!.capabilities = {ips: true, bandwidth: true, dns: true, aliases: true}
  c.plugins[2]!.iptablesAdminChainName = 'CNI-ADMIN'
  c.plugins[3] = {type: 'tuning', capabilities: {mac: true}, dataDir: tuningDir, sysctl: {'net.ipv4.conf.IFNAME.arp_notify': '1'}}
  return c
}

// ---- sentinels ------------------------------------------------------------

const SENTINEL_TABLES: Record<string, string[]> = {
  raw: ['PREROUTING', 'OUTPUT'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
}

/** A rule in every built-in chain of every table, jumping to a user chain that holds one more. */
function sentinelScript(family: 4 | 6): string {
  const a = family === 4 ? '192.0.2.1/32' : '2001:db8::1/128'
  const out: string[] = []
  for (const [table, chains] of Object.entries(SENTINEL_TABLES)) {
    const user = `SENTINEL-${table.toUpperCase()}`
    out.push(`*${table}`, `:${user} - [0:0]`)
    for (const c of chains) out.push(`-A ${c} -s ${a} -m comment --comment sentinel -j ${user}`)
    out.push(`-A ${user} -s ${a} -m comment --comment sentinel -j RETURN`, 'COMMIT')
  }
  return out.join('\n') + '\n'
}

const NFT_SENTINEL = `table inet sentinel {
  set guarded {
    type ipv4_addr
    elements = { 192.0.2.7 }
  }
  chain input {
    type filter hook input priority 10; policy accept;
    ip saddr @guarded accept comment "sentinel"
  }
}
`

/** Lines of the sentinel rules and chains as iptables-save prints them (from the baseline). */
let sentinelLines: {v4: string[]; v6: string[]} = {v4: [], v6: []}
const SENTINEL_RULES = Object.values(SENTINEL_TABLES).reduce((n, c) => n + c.length + 1, 0)

async function installSentinels(): Promise<void> {
  await inHost(['iptables-restore', '--noflush'], {input: sentinelScript(4)})
  await inHost(['ip6tables-restore', '--noflush'], {input: sentinelScript(6)})
  await inHost(['nft', '-f', '-'], {input: NFT_SENTINEL})
}

/** The sentinels that are gone from a snapshot (empty when all are there). */
function missingSentinels(snap: Snap): string[] {
  const s4 = snap.ipt4!.split('\n')
  const s6 = snap.ipt6!.split('\n')
  const missing = [
    ...sentinelLines.v4.filter((l) => !s4.includes(l)).map((l) => `iptables: ${l}`),
    ...sentinelLines.v6.filter((l) => !s6.includes(l)).map((l) => `ip6tables: ${l}`),
  ]
  const nft = snap.nft!
  const t = nft.indexOf('table inet sentinel {')
  const table = t < 0 ? '' : nft.slice(t, nft.indexOf('\n}', t))
  if (!table) missing.push('nft table inet sentinel')
  else {
    if (!table.includes('comment "sentinel"')) missing.push('nft rule comment "sentinel"')
    if (!table.includes('192.0.2.7')) missing.push('nft set element 192.0.2.7')
  }
  return missing
}

const sentinelsNow = async () => missingSentinels(await snapshot())

// ---- snapshots --------------------------------------------------------------

type Snap = Record<string, string>

/** iptables-save without comment lines and counters. */
function normSave(s: string): string[] {
  return s
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ''))
}

/** Lock files: taking a lock is not a change. Only these are left out. */
function skipped(rel: string): boolean {
  const base = rel.split('/').pop()!
  return base === '.nerdctl.lock' || rel === 'cache/ctrnet/locks'
}

/** Every dir, file (sha256 and size) and symlink under the lab's dir. */
function tree(root: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (rel: string) => {
    const abs = rel ? join(root, rel) : root
    for (const n of readdirSync(abs).sort()) {
      const r = rel ? `${rel}/${n}` : n
      if (skipped(r)) continue
      const st = lstatSync(join(root, r))
      if (st.isSymbolicLink()) out[r] = `symlink -> ${readlinkSync(join(root, r))}`
      else if (st.isDirectory()) {
        out[`${r}/`] = `dir ${(st.mode & 0o7777).toString(8)}`
        walk(r)
      } else {
        const data = readFileSync(join(root, r))
        out[r] = `${st.size} bytes ${(st.mode & 0o7777).toString(8)} sha256:${createHash('sha256').update(data).digest('hex').slice(0, 16)}`
      }
    }
  }
  walk('')
  return out
}

/** Files of the lab at the baseline, to put back after a case that changed one. */
let baselineFiles = new Map<string, Buffer>()

/** The kernel state, read in one shell in the host netns (and the container netns through `ip -n`). */
const KERNEL_PARTS: Array<[string, string]> = [
  ['ipt4', 'iptables-save'],
  ['ipt6', 'ip6tables-save'],
  ['nft', 'nft -s list ruleset'],
  ['link', 'ip -o link show'],
  ['addr', 'ip -o addr show'],
  ['route4', 'ip route show'],
  ['route6', 'ip -6 route show'],
  ['ctrLink', 'ip -n "$1" -o link show'],
  ['ctrAddr', 'ip -n "$1" -o addr show'],
]
const KERNEL_SCRIPT = ['set -e', ...KERNEL_PARTS.flatMap(([k, cmd]) => [`echo "@@@@ ${k}"`, cmd])].join('\n')

async function snapshot(extra: () => Promise<Snap> = async () => ({})): Promise<Snap> {
  const [k, more] = await Promise.all([inHost(['sh', '-c', KERNEL_SCRIPT, 'sh', ctr]), extra()])
  const parts: Record<string, string[]> = {}
  let key = ''
  for (const line of k.stdout.split('\n')) {
    const m = /^@@@@ (\w+)$/.exec(line)
    if (m) parts[(key = m[1]!)] = []
    else if (key) parts[key]!.push(line)
  }
  const out: Snap = {}
  for (const [part] of KERNEL_PARTS) {
    if (!parts[part]) throw new Error(`snapshot: no ${part} in ${k.stdout.slice(0, 200)}`)
    out[part] = parts[part].join('\n')
  }
  out.ipt4 = normSave(out.ipt4!).join('\n')
  out.ipt6 = normSave(out.ipt6!).join('\n')
  return {...out, files: JSON.stringify(tree(host.dir), null, 1), ...more}
}

/** What differs, one entry per part, with the first lines that were removed or added. */
function diff(before: Snap, after: Snap): string[] {
  const out: string[] = []
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const b = before[k] ?? ''
    const a = after[k] ?? ''
    if (a === b) continue
    const bl = b.split('\n')
    const al = a.split('\n')
    const gone = bl.filter((l) => !al.includes(l)).slice(0, 4)
    const added = al.filter((l) => !bl.includes(l)).slice(0, 4)
    const show = (l: string) => JSON.stringify(l.length > 160 ? `${l.slice(0, 160)}...` : l)
    out.push(`${k}: ${[...gone.map((l) => `-${show(l)}`), ...added.map((l) => `+${show(l)}`)].join(' ') || '(order changed)'}`)
  }
  return out
}

async function waitStable(extra?: () => Promise<Snap>): Promise<Snap> {
  let prev = await snapshot(extra)
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 200))
    const next = await snapshot(extra)
    if (diff(prev, next).length === 0 && !/tentative/.test(next.addr)) return next
    prev = next
  }
  throw new Error(`the lab does not settle: ${diff(prev, await snapshot(extra)).join('; ')}`)
}

let baseline: Snap

/**
 * Puts the lab back to the baseline after a case that changed it: the whole
 * nft ruleset (iptables-nft tables too) is flushed and the sentinels are
 * installed again exactly as at the start, links that were not there are
 * deleted, files and dirs that were not there are removed, changed files are
 * written back, and the container netns is made anew.
 */
async function resetLab(extra?: () => Promise<Snap>): Promise<void> {
  await inHost(['nft', 'flush', 'ruleset'])
  await installSentinels()
  const links = JSON.parse((await inHost(['ip', '-j', 'link', 'show'])).stdout) as Array<{ifname: string}>
  const keep = new Set(baseline.link.split('\n').map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1]).filter(Boolean))
  for (const l of links) if (!keep.has(l.ifname)) await inHost(['ip', 'link', 'del', l.ifname], {allowFailure: true})
  const base = JSON.parse(baseline.files) as Record<string, string>
  const now = tree(host.dir)
  for (const p of Object.keys(now).sort().reverse()) if (!(p in base)) rmSync(join(host.dir, p), {recursive: true, force: true})
  for (const [p, data] of baselineFiles) if (now[p] !== base[p]) writeFileSync(join(host.dir, p), data)
  await destroyNetns(ctr)
  ctr = await createNetns('inj', 'ctr')
  const again = await waitStable(extra)
  const left = diff(baseline, again)
  if (left.length) throw new Error(`could not reset the lab: ${left.join('; ')}`)
}

function rememberBaselineFiles(): void {
  baselineFiles = new Map()
  for (const [p, v] of Object.entries(JSON.parse(baseline.files) as Record<string, string>)) {
    if (!v.startsWith('dir') && !v.startsWith('symlink')) baselineFiles.set(p, readFileSync(join(host.dir, p)))
  }
}

// ---- refusals ---------------------------------------------------------------

interface Case {
  name: string
  /** the field path the error line must contain */
  field: string
  run: () => Promise<Res>
  /** writes a per-case file (the hostile conflist), removed again by teardown */
  setup?: () => void
  teardown?: () => void
  /** undoes what an accepted case did outside the lab's dirs and host netns (before the reset) */
  cleanup?: () => Promise<unknown>
}

interface Outcome {
  res: Res
  line: string
  lineProblems: string[]
  changed: string[]
  missing: string[]
}

/** JSON with U+2028/U+2029 escaped too (JSON.stringify leaves them raw). */
const esc = (s: string) => JSON.stringify(s).replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029')

/** One line on stderr: ends in \n, no other line break (\r, U+2028, U+2029, U+0085 count) or control character. */
function errorLine(stderr: string): {line: string; problems: string[]} {
  const problems: string[] = []
  if (!stderr.endsWith('\n')) problems.push('stderr does not end in a newline')
  const body = stderr.endsWith('\n') ? stderr.slice(0, -1) : stderr
  const lines = body.split('\n')
  if (lines.length !== 1) problems.push(`stderr has ${lines.length} lines`)
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]/.test(body)) problems.push('the line holds a control character or a unicode line break')
  if (!lines[0]!.startsWith('ctrnet: ')) problems.push('the line does not start with "ctrnet: "')
  return {line: lines[0]!, problems}
}

let caseNo = 0
const cid = () => `inj${++caseNo}`

/** Runs a case; compares the state after it with the baseline; resets the lab when it changed. */
async function runCase(c: Case, extra?: () => Promise<Snap>): Promise<Outcome> {
  let res: Res
  try {
    c.setup?.()
    res = await c.run()
  } finally {
    c.teardown?.()
  }
  const after = await snapshot(extra)
  const changed = diff(baseline, after)
  const missing = missingSentinels(after)
  if (changed.length || missing.length) {
    await c.cleanup?.()
    await resetLab(extra)
  }
  const {line, problems} = errorLine(res.stderr)
  return {res, line, lineProblems: problems, changed, missing}
}

/** The contract of a refusal, as soft assertions so a failure shows all that is wrong. */
function expectRefused(c: Case, o: Outcome, field = c.field): void {
  const stderr = esc(o.res.stderr.slice(0, 600))
  expect.soft(o.res.code, `accepted (exit 0); stdout: ${o.res.stdout.slice(0, 300)}`).not.toBe(0)
  expect.soft(o.lineProblems, `stderr: ${stderr}`).toEqual([])
  expect.soft(o.line.includes(field), `the error line names ${field}: ${stderr}`).toBe(true)
  expect.soft(o.changed, 'state changed').toEqual([])
  expect.soft(o.missing, 'sentinels gone').toEqual([])
}

// ---- the corpus -------------------------------------------------------------

interface Field {
  path: string
  base: string | number
  pathLike?: boolean
  /** values of the wrong type or out of range, beyond the payloads */
  wrong?: unknown[]
}

const hostilesOf = (f: Field, argv: boolean): Array<[string, unknown]> => [
  ...PAYLOADS.filter((p) => !(argv && p.nul)).map((p): [string, unknown] => [p.name, p.make(String(f.base), !!f.pathLike)]),
  ...(f.wrong ?? []).map((v): [string, unknown] => [JSON.stringify(v), v]),
]

const cniAdd = (net: string, extra: string[], netconf?: string) => cli(['cni', 'add', net, netnsPath(ctr), '--container-id', cid(), ...extra], {netconf})

// capability args, through --cap-args (JSON: a NUL travels as \u0000)
const capFields: Array<Field & {put: (v: unknown) => object}> = [
  {path: 'portMappings[0].protocol', base: 'tcp', wrong: ['icmp', 6, 'tcp\n'], put: (v) => ({portMappings: [{hostPort: 8080, containerPort: 80, protocol: v}]})},
  {
    path: 'portMappings[1].protocol',
    base: 'udp',
    put: (v) => ({portMappings: [{hostPort: 8080, containerPort: 80, protocol: 'tcp'}, {hostPort: 8081, containerPort: 81, protocol: v}]}),
  },
  {path: 'portMappings[0].hostPort', base: 8080, wrong: [70000, '80', 0, -1, 80.5, 65536, true], put: (v) => ({portMappings: [{hostPort: v, containerPort: 80, protocol: 'tcp'}]})},
  {path: 'portMappings[0].containerPort', base: 80, wrong: [70000, '80', 0], put: (v) => ({portMappings: [{hostPort: 8080, containerPort: v, protocol: 'tcp'}]})},
  {
    path: 'portMappings[0].hostIP',
    base: '10.0.0.1',
    wrong: ['300.1.1.1', '10.0.0.1/24', 10],
    put: (v) => ({portMappings: [{hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: v}]}),
  },
  {path: 'ips[0]', base: '10.91.0.9/24', wrong: ['10.91.0.999/24', '10.91.0.9/33', 'localhost', 10919], put: (v) => ({ips: [v]})},
  {path: 'ips[1]', base: '10.91.0.10/24', put: (v) => ({ips: ['10.91.0.9/24', v]})},
  {path: 'mac', base: '0a:58:0a:5b:00:09', wrong: ['0a:58:0a:5b:00:09\n', '0a:58:0a:5b:00', 'zz:58:0a:5b:00:09', 12], put: (v) => ({mac: v})},
  ...(['ingressRate', 'ingressBurst', 'egressRate', 'egressBurst'] as const).map((k) => ({
    path: `bandwidth.${k}`,
    base: 1000000,
    wrong: k === 'ingressRate' ? ['fast', -1, 1.5, '1000000'] : ['fast'],
    put: (v: unknown) => ({bandwidth: {ingressRate: 1000000, ingressBurst: 100000, egressRate: 1000000, egressBurst: 100000, [k]: v}}),
  })),
  {path: 'dns.nameservers[0]', base: '10.91.0.53', wrong: ['ns1.example.com'], put: (v) => ({dns: {nameservers: [v]}})},
  {path: 'dns.search[0]', base: 'example.com', wrong: ['-example.com'], put: (v) => ({dns: {nameservers: ['10.91.0.53'], search: [v]}})},
  {path: 'dns.domain', base: 'example.com', wrong: ['-example.com'], put: (v) => ({dns: {domain: v}})},
  {path: `aliases.${NET}[0]`, base: 'web', wrong: ['-web'], put: (v) => ({aliases: {[NET]: [v]}})},
]

// CNI_ARGS, through --cni-args (argv: no NUL)
const cniArgFields: Array<Field & {put: (v: string) => string}> = [
  {path: 'CNI_ARGS.IP', base: '10.91.0.9', wrong: ['10.91.0.999'], put: (v) => `IgnoreUnknown=1;IP=${v}`},
  {path: 'CNI_ARGS.MAC', base: '0a:58:0a:5b:00:09', wrong: ['0a:58:0a:5b:00:09\n'], put: (v) => `IgnoreUnknown=1;MAC=${v}`},
  {path: 'CNI_ARGS.K8S_POD_NAME', base: 'web-0', put: (v) => `IgnoreUnknown=1;K8S_POD_NAME=${v}`},
  {path: 'CNI_ARGS.K8S_POD_NAMESPACE', base: 'default', put: (v) => `IgnoreUnknown=1;K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=${v}`},
  {path: 'CNI_ARGS.IgnoreUnknown', base: '1', wrong: ['yes'], put: (v) => `IgnoreUnknown=${v};K8S_POD_NAME=web-0`},
]

// conflist fields of the embedded plugins, in a per-case conflist (JSON: a NUL travels as \u0000)
type ConfEdit = (c: Conf, v: unknown) => void
const p = (c: Conf, i: number) => c.plugins[i] as Record<string, any>
const SYSCTL = 'net.ipv4.conf.IFNAME.arp_notify'
/** Stand-ins for the lab's dirs in field bases (the table is built before the lab exists). */
const DATADIR = '@DATADIR@'
const TUNINGDIR = '@TUNINGDIR@'
const labPath = (v: unknown) => (typeof v === 'string' ? v.replace(DATADIR, host.dataDir).replace(TUNINGDIR, tuningDir) : v)
const confFields: Array<Field & {put: ConfEdit}> = [
  {path: 'plugins[0].bridge', base: HBRIDGE, wrong: ['br-0123456789abcdef', '-br', 7], put: (c, v) => (p(c, 0).bridge = v)},
  {path: 'plugins[0].mtu', base: 1500, wrong: ['1500', 1000000, -1, 1500.5], put: (c, v) => (p(c, 0).mtu = v)},
  {path: 'plugins[0].ipam.ranges[0][0].subnet', base: '10.92.0.0/24', wrong: ['10.92.0.0/33', '10.92.0.0', 'default'], put: (c, v) => (p(c, 0).ipam.ranges[0][0].subnet = v)},
  {path: 'plugins[0].ipam.ranges[0][0].gateway', base: '10.92.0.1', wrong: ['10.92.0.256'], put: (c, v) => (p(c, 0).ipam.ranges[0][0].gateway = v)},
  {path: 'plugins[0].ipam.ranges[0][0].rangeStart', base: '10.92.0.10', put: (c, v) => (p(c, 0).ipam.ranges[0][0].rangeStart = v)},
  {
    path: 'plugins[0].ipam.routes[0].dst',
    base: '0.0.0.0/0',
    wrong: ['0.0.0.0/0 via 10.92.0.254', '0.0.0.0/0 dev lo', '10.0.0.0/8 table 5', 'default'],
    put: (c, v) => (p(c, 0).ipam.routes = [{dst: v}]),
  },
  {path: 'plugins[0].ipam.routes[1].gw', base: '10.92.0.254', put: (c, v) => (p(c, 0).ipam.routes = [{dst: '0.0.0.0/0'}, {dst: '192.168.0.0/16', gw: v}])},
  {path: 'plugins[0].ipam.dataDir', base: DATADIR, pathLike: true, wrong: ['relative/dir', `${DATADIR}/x/../../ipam2`], put: (c, v) => (p(c, 0).ipam.dataDir = labPath(v))},
  {path: 'plugins[0].ipMasqBackend', base: 'iptables', wrong: ['x', 'firewalld', '', 5, true], put: (c, v) => (p(c, 0).ipMasqBackend = v)},
  {path: 'plugins[1].backend', base: 'iptables', wrong: ['x', 'nft', '', 5], put: (c, v) => (p(c, 1).backend = v)},
  {path: 'plugins[1].externalSetMarkChain', base: 'SETMARK', wrong: ['-SETMARK', 'S'.repeat(29)], put: (c, v) => (p(c, 1).externalSetMarkChain = v)},
  {path: 'plugins[1].conditionsV4[0]', base: '-d', wrong: [5], put: (c, v) => (p(c, 1).conditionsV4 = [v, '10.0.0.0/8'])},
  {path: 'plugins[2].iptablesAdminChainName', base: 'ADMIN', wrong: ['-ADMIN', 'A'.repeat(29)], put: (c, v) => (p(c, 2).iptablesAdminChainName = v)},
  {path: `plugins[3].sysctl.${SYSCTL}`, base: '1', wrong: ['1\n0', 1, '1 0'], put: (c, v) => (p(c, 3).sysctl = {[SYSCTL]: v})},
  {path: 'plugins[3].mac', base: '0a:58:0a:5c:00:09', wrong: ['0a:58:0a:5c:00:09\n', 'zz:58:0a:5c:00:09'], put: (c, v) => (p(c, 3).mac = v)},
  {path: 'plugins[3].dataDir', base: TUNINGDIR, pathLike: true, wrong: ['relative/dir'], put: (c, v) => (p(c, 3).dataDir = labPath(v))},
]
/** Hostile sysctl keys: the error names `plugins[3].sysctl.` (the key itself cannot be shown verbatim). */
const HOSTILE_SYSCTL_KEYS = ['kernel.hostname', `${SYSCTL}\n--flush`, `${SYSCTL} -j ACCEPT`, 'net.ipv4.conf.IFNAME.arp_notify/../../../../kernel/hostname', `${SYSCTL}#`]

let confNo = 0
/**
 * A case on a hostile conflist `injh`: the lab's chain on 10.92.0.0/24 with
 * one field edited, in a config dir of its own (so cases can run side by
 * side, and a hostile file never sits in the lab's config dir).
 */
function hostileConf(edit: (c: Conf) => void): Pick<Case, 'setup' | 'run' | 'teardown'> {
  let dir = ''
  return {
    setup: () => {
      dir = join(lockDir, `conf${++confNo}`)
      mkdirSync(dir)
      const c = chain(HNET, HBRIDGE, '10.92.0.0/24', '10.92.0.1')
      edit(c)
      writeFileSync(join(dir, `${HNET}.conflist`), JSON.stringify(c, null, 2))
    },
    run: () => cniAdd(HNET, [], dir),
    teardown: () => rmSync(dir, {recursive: true, force: true}),
  }
}

// CLI flags (argv: no NUL)
const addFlagFields: Array<Field & {flag: string}> = [
  {path: '--publish', flag: '--publish', base: '8080:80/tcp', wrong: ['70000:80', '8080:80/icmp', '1.2.3.4 ! -s 1.1.1.1:8080:80', '0:80', '8080:80/tcp/udp']},
  {path: '--ip', flag: '--ip', base: '10.91.0.9', wrong: ['10.91.0.999']},
  {path: '--ifname', flag: '--ifname', base: 'eth1', wrong: ['eth0123456789abc', '-eth1']},
]
const createFields: Array<Field & {args: (v: string) => string[]}> = [
  {path: '--subnet', base: '10.93.0.0/24', wrong: ['10.93.0.0/33'], args: (v) => [`--subnet=${v}`]},
  {path: '--gateway', base: '10.93.0.1', wrong: ['10.93.0.300'], args: (v) => ['--subnet=10.93.0.0/24', `--gateway=${v}`]},
  {path: '--ip-range', base: '10.93.0.128/25', wrong: ['10.93.0.128/33'], args: (v) => ['--subnet=10.93.0.0/24', `--ip-range=${v}`]},
  {path: '-o mtu', base: '1500', wrong: ['fast'], args: (v) => ['-o', `mtu=${v}`]},
  {path: '-o com.docker.network.bridge.name', base: 'br-injc', wrong: ['br-0123456789abcdef'], args: (v) => ['-o', `com.docker.network.bridge.name=${v}`]},
  {path: '-o ip-masq', base: 'true', wrong: ['maybe'], args: (v) => ['-o', `ip-masq=${v}`]},
  {path: '--firewall-backend', base: 'iptables', wrong: ['nft', 'IPTABLES', ''], args: (v) => [`--firewall-backend=${v}`]},
]

/** The corpus: every field with every payload and its wrong-typed values. */
function buildCorpus(): Array<Case & {group: string}> {
  const cases: Array<Case & {group: string}> = []
  for (const f of capFields) {
    for (const [pn, v] of hostilesOf(f, false)) {
      cases.push({group: 'capability args', name: `${f.path} = ${pn}`, field: f.path, run: () => cniAdd(NET, ['--cap-args', JSON.stringify(f.put(v))])})
    }
  }
  for (const f of cniArgFields) {
    for (const [pn, v] of hostilesOf(f, true)) {
      cases.push({group: 'CNI_ARGS', name: `${f.path} = ${pn}`, field: f.path, run: () => cniAdd(NET, ['--cni-args', f.put(String(v))])})
    }
  }
  for (const f of confFields) {
    for (const [pn, v] of hostilesOf(f, false)) {
      cases.push({group: 'conflist', name: `${f.path} = ${pn}`, field: f.path, ...hostileConf((c) => f.put(c, v))})
    }
  }
  for (const k of HOSTILE_SYSCTL_KEYS) {
    cases.push({
      group: 'conflist',
      name: `plugins[3].sysctl key ${JSON.stringify(k)}`,
      field: 'plugins[3].sysctl.',
      ...hostileConf((c) => (p(c, 3).sysctl = {[k]: '1'})),
    })
  }
  for (const f of addFlagFields) {
    for (const [pn, v] of hostilesOf(f, true)) {
      cases.push({group: 'cni add flags', name: `cni add ${f.path} = ${pn}`, field: f.path, run: () => cniAdd(NET, [`${f.flag}=${String(v)}`])})
    }
  }
  for (const f of createFields) {
    for (const [pn, v] of hostilesOf(f, true)) {
      cases.push({group: 'network create flags', name: `network create ${f.path} = ${pn}`, field: f.path, run: () => cli(['network', 'create', ...f.args(String(v)), CNET])})
    }
  }
  return cases
}

// ---- setup ------------------------------------------------------------------

const results = new Map<string, {passed: number; failed: number}>()

beforeAll(async () => {
  host = new HostNs('inj')
  tuningDir = join(host.dir, 'tuning')
  cwdDir = join(host.dir, 'cwd')
  mkdirSync(tuningDir)
  mkdirSync(cwdDir)
  lockDir = mkdtempSync(join(tmpdir(), 'ctrnet-inj-lock-'))
  cliPath = privateBuild(lockDir)
  cliEnv = {...process.env, NO_COLOR: '1', CTRNET_IPTABLES_LOCK: join(lockDir, 'iptables.lock')}
  for (const k of ['FORCE_COLOR', 'DEBUG', 'CAP_ARGS', 'CNI_ARGS', 'NETCONFPATH', 'CNI_PATH', 'CONTAINERD_NAMESPACE', 'CONTAINERD_ADDRESS', 'CTRNET_CNI_MODE', 'CTRNET_PLUGIN_TIMEOUT_MS']) {
    delete cliEnv[k]
  }
  // a host NIC with addresses and routes (no DAD: nothing settles during the corpus)
  await inHost(['sh', '-c', 'echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad'])
  await addDummy(host.name, UPLINK, ['10.255.0.2/24', 'fd00:255::2/64'])
  await inHost(['ip', 'route', 'add', '198.51.100.0/24', 'via', '10.255.0.1'])
  await inHost(['ip', '-6', 'route', 'add', '2001:db8:51::/64', 'via', 'fd00:255::1'])
  ctr = await createNetns('inj', 'ctr')
  writeFileSync(join(host.netconf, `${NET}.conflist`), JSON.stringify(chain(NET, BRIDGE, SUBNET, '10.91.0.1'), null, 2))
  // the network of the connect cases (nerdctl's file), with the lab's lease and tuning dirs
  const mk = await cli(['network', 'create', '--subnet', '10.94.0.0/24', CONNECT_NET], {namespace: CTRD_NS})
  expect(mk.code, mk.stderr).toBe(0)
  const file = host.confPath(CONNECT_NET, CTRD_NS)
  const conf = JSON.parse(readFileSync(file, 'utf8')) as Conf
  for (const pl of conf.plugins) {
    const ipam = pl.ipam as Record<string, unknown> | undefined
    if (ipam?.type === 'host-local') ipam.dataDir = host.dataDir
    if (pl.type === 'tuning') pl.dataDir = tuningDir
  }
  writeFileSync(file, JSON.stringify(conf, null, 2) + '\n')

  await installSentinels()
  baseline = await waitStable()
  rememberBaselineFiles()
  const s4 = normSave(baseline.ipt4)
  const s6 = normSave(baseline.ipt6)
  const pick = (lines: string[]) => lines.filter((l) => l.includes('--comment sentinel') || l.startsWith(':SENTINEL-'))
  sentinelLines = {v4: pick(s4), v6: pick(s6)}
  // the sentinels are really there, in every table and chain type
  expect(sentinelLines.v4.filter((l) => l.startsWith('-A ')).length).toBe(SENTINEL_RULES)
  expect(sentinelLines.v6.filter((l) => l.startsWith('-A ')).length).toBe(SENTINEL_RULES)
  expect(await sentinelsNow()).toEqual([])
  // nothing of CNI yet: the refusals are judged against a clean lab
  expect(baseline.ipt4).not.toMatch(/CNI-/)
  expect(baseline.link).not.toContain(BRIDGE)
})

afterAll(async () => {
  if (ctr) await destroyNetns(ctr)
  host?.cleanup()
  if (lockDir) rmSync(lockDir, {recursive: true, force: true})
  const rows = [...results].map(([g, r]) => `${g}: ${r.passed} refused cleanly, ${r.failed} failing`)
  console.log(`injection corpus: ${cliRuns} CLI runs\n${rows.join('\n')}`)
})

function tally(group: string, ok: boolean): void {
  const r = results.get(group) ?? {passed: 0, failed: 0}
  if (ok) r.passed++
  else r.failed++
  results.set(group, r)
}

const refusedCleanly = (o: Outcome, field: string) =>
  o.res.code !== 0 && o.lineProblems.length === 0 && o.line.includes(field) && o.changed.length === 0 && o.missing.length === 0

// ---- regressions named after the issue ---------------------------------------

/** Nothing of an attachment: no bridge, no CNI chains or jumps (v4, v6), no lease, no cache or journal entry. */
async function leftovers(): Promise<string[]> {
  const out: string[] = []
  const links = (await inHost(['ip', '-o', 'link', 'show'])).stdout
  for (const b of [BRIDGE, HBRIDGE]) if (links.includes(`: ${b}:`)) out.push(`bridge ${b}`)
  if (/: veth/.test(links)) out.push('a veth')
  for (const bin of ['iptables-save', 'ip6tables-save']) {
    for (const l of normSave((await inHost([bin])).stdout)) {
      if (/^:CNI-/.test(l) || /-j CNI-/.test(l)) out.push(`${bin}: ${l}`)
    }
  }
  for (const net of [NET, HNET]) {
    const d = join(host.dataDir, net)
    if (existsSync(d)) for (const f of readdirSync(d)) out.push(`lease dir ${net}: ${f}`)
  }
  for (const d of [join(host.cache, 'results'), join(host.cache, 'ctrnet', 'pending')]) {
    if (existsSync(d)) for (const f of readdirSync(d)) out.push(`cache ${d.slice(host.cache.length + 1)}: ${f}`)
  }
  return out
}

describe('the harness', () => {
  it('sees a flushed table and a new link, and puts the lab back to the baseline', async () => {
    await inHost(['iptables', '-t', 'nat', '-F'])
    await inHost(['ip', 'link', 'add', 'inj-probe0', 'type', 'veth', 'peer', 'name', 'inj-probe1'])
    writeFileSync(join(host.cache, 'probe'), 'x')
    const after = await snapshot()
    expect(diff(baseline, after).map((d) => d.split(':')[0])).toEqual(['ipt4', 'nft', 'link', 'files'])
    expect(missingSentinels(after)).toContain('iptables: -A POSTROUTING -s 192.0.2.1/32 -m comment --comment sentinel -j SENTINEL-NAT')
    await resetLab()
    const again = await snapshot()
    expect(diff(baseline, again)).toEqual([])
    expect(missingSentinels(again)).toEqual([])
  })
})

describe('regressions (security issue, item 3)', () => {
  it('(a) portMappings protocol "tcp\\n--flush\\n#" is refused and does not flush the nat table', async () => {
    const c: Case = {
      name: 'a',
      field: 'portMappings[0].protocol',
      run: () => cniAdd(NET, ['--cap-args', '{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp\\n--flush\\n#"}]}']),
    }
    let nat = ''
    const o = await runCase(c, async () => {
      const s = normSave((await inHost(['iptables-save', '-t', 'nat'])).stdout)
      nat = s.join('\n')
      return {}
    })
    expectRefused(c, o)
    expect(nat).toContain('-A POSTROUTING -s 192.0.2.1/32 -m comment --comment sentinel -j SENTINEL-NAT')
    expect(nat).toContain('-A PREROUTING -s 192.0.2.1/32 -m comment --comment sentinel -j SENTINEL-NAT')
  })

  it('(b) firewall iptablesAdminChainName "ADMIN\\n--flush" is refused and does not flush filter', async () => {
    const c: Case = {
      name: 'b',
      field: 'plugins[2].iptablesAdminChainName',
      ...hostileConf((conf) => (p(conf, 2).iptablesAdminChainName = 'ADMIN\n--flush')),
    }
    let filter = ''
    const o = await runCase(c, async () => {
      filter = normSave((await inHost(['iptables-save', '-t', 'filter'])).stdout).join('\n')
      return {}
    })
    expectRefused(c, o)
    for (const ch of SENTINEL_TABLES.filter!) expect(filter).toContain(`-A ${ch} -s 192.0.2.1/32 -m comment --comment sentinel -j SENTINEL-FILTER`)
  })

  it('(c) hostIP "10.0.0.1 ! -s 10.91.0.7" is refused', async () => {
    const c: Case = {
      name: 'c',
      field: 'portMappings[0].hostIP',
      run: () => cniAdd(NET, ['--cap-args', JSON.stringify({portMappings: [{hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '10.0.0.1 ! -s 10.91.0.7'}]})]),
    }
    expectRefused(c, await runCase(c))
  })

  it('(d) ips ["10.91.0.9/24\\n-A INPUT -j ACCEPT"] is refused', async () => {
    const c: Case = {name: 'd', field: 'ips[0]', run: () => cniAdd(NET, ['--cap-args', JSON.stringify({ips: ['10.91.0.9/24\n-A INPUT -j ACCEPT']})])}
    expectRefused(c, await runCase(c))
  })

  it('(e) tuning sysctl value "1\\n0" is refused', async () => {
    const c: Case = {
      name: 'e',
      field: `plugins[3].sysctl.${SYSCTL}`,
      ...hostileConf((conf) => (p(conf, 3).sysctl = {[SYSCTL]: '1\n0'})),
    }
    expectRefused(c, await runCase(c))
  })

  const invalid: Array<[string, Case]> = [
    ['host port out of range (70000)', {name: 'f1', field: 'portMappings[0].hostPort', run: () => cniAdd(NET, ['--cap-args', JSON.stringify({portMappings: [{hostPort: 70000, containerPort: 80, protocol: 'tcp'}]})])}],
    ['protocol icmp', {name: 'f2', field: 'portMappings[0].protocol', run: () => cniAdd(NET, ['--cap-args', JSON.stringify({portMappings: [{hostPort: 8080, containerPort: 80, protocol: 'icmp'}]})])}],
    ['MAC with a newline', {name: 'f3', field: 'mac', run: () => cniAdd(NET, ['--cap-args', JSON.stringify({mac: '0a:58:0a:5b:00:09\n'})])}],
    ['bandwidth rate as text', {name: 'f4', field: 'bandwidth.ingressRate', run: () => cniAdd(NET, ['--cap-args', JSON.stringify({bandwidth: {ingressRate: 'fast', ingressBurst: 100000}})])}],
    [
      'route dst with options',
      {name: 'f5', field: 'plugins[0].ipam.routes[0].dst', ...hostileConf((conf) => (p(conf, 0).ipam.routes = [{dst: '0.0.0.0/0 via 10.92.0.254 table 5'}]))},
    ],
    ['MTU as text', {name: 'f6', field: 'plugins[0].mtu', ...hostileConf((conf) => (p(conf, 0).mtu = '1500'))}],
  ]
  it.each(invalid)('(f) %s leaves no bridge, no CNI chains or jumps, no lease, no cache entry', async (_n, c) => {
    let left: string[] = []
    const o = await runCase(c, async () => {
      left = await leftovers()
      return {}
    })
    expect.soft(left).toEqual([])
    expectRefused(c, o)
  })
})

// ---- the corpus -------------------------------------------------------------

describe('injection corpus: every hostile value is refused before any kernel work', () => {
  const corpus = buildCorpus()

  it('covers every field with every payload', () => {
    const all = corpus
    const fields = new Set(all.map((c) => c.field))
    expect(fields.size).toBeGreaterThanOrEqual(capFields.length + cniArgFields.length + 14 + addFlagFields.length + createFields.length)
    for (const f of fields) {
      const n = all.filter((c) => c.field === f).length
      const argv = f.startsWith('CNI_ARGS') || f.startsWith('--') || f.startsWith('-o ')
      if (f !== 'plugins[3].sysctl.') expect(n, f).toBeGreaterThanOrEqual(argv ? PAYLOADS.length - 1 : PAYLOADS.length)
    }
    console.log(`injection corpus: ${all.length} cases over ${fields.size} fields`)
  })

  // One describe per field. Its cases run side by side (they are independent:
  // own container id, own conflist dir) and the lab is compared with the
  // baseline once, after all of them. When anything changed, or the
  // sentinels are gone, the lab is reset and the cases run again one at a
  // time with a snapshot after each, so a change is pinned on its case. A
  // case whose refusal is not as it should be runs again alone as well, so
  // its verdict never depends on its neighbours.
  const byField = new Map<string, Array<Case & {group: string}>>()
  for (const c of corpus) {
    const k = `${c.group}: ${c.field}`
    byField.set(k, [...(byField.get(k) ?? []), c])
  }
  for (const [key, cases] of byField) {
    describe(key, () => {
      const outcomes = new Map<Case, Outcome>()
      beforeAll(async () => {
        const quick = await pool(cases, PARALLEL, async (c) => {
          try {
            c.setup?.()
            return await c.run()
          } finally {
            c.teardown?.()
          }
        })
        const after = await snapshot()
        if (diff(baseline, after).length || missingSentinels(after).length) {
          await resetLab()
          for (const c of cases) outcomes.set(c, await runCase(c))
          return
        }
        for (const [i, c] of cases.entries()) {
          const {line, problems} = errorLine(quick[i]!.stderr)
          const o: Outcome = {res: quick[i]!, line, lineProblems: problems, changed: [], missing: []}
          // a refusal that is wrong only in its wording does not depend on the neighbours
          const alone = o.res.code === 0 || !o.line.includes(c.field)
          outcomes.set(c, alone ? await runCase(c) : o)
        }
      })
      it.each(cases.map((c) => [esc(c.name).slice(1, -1), c] as const))('%s', (_name, c) => {
        const o = outcomes.get(c)
        expect(o, 'the case did not run').toBeDefined()
        tally(c.group, refusedCleanly(o!, c.field))
        expectRefused(c, o!)
      })
    })
  }
})

/** Cases side by side in the corpus (each is one CLI process). */
const PARALLEL = 4

async function pool<T, R>(items: T[], n: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let next = 0
  await Promise.all(
    Array.from({length: Math.min(n, items.length)}, async () => {
      while (next < items.length) {
        const i = next++
        out[i] = await fn(items[i]!)
      }
    }),
  )
  return out
}

// ---- network connect -p with a real containerd ------------------------------------

let ctrd: PrivateContainerd | undefined
const WEB = 'inj-web-0123456789'
let webPid = 0
const ctrdOpts = () => ({address: ctrd!.address, namespace: CTRD_NS})

/** The container's netns (links, addresses) and labels. */
async function containerState(): Promise<Snap> {
  const ns = `--net=/proc/${webPid}/ns/net`
  const [l, a] = await Promise.all([exec('nsenter', [ns, 'ip', '-o', 'link', 'show']), exec('nsenter', [ns, 'ip', '-o', 'addr', 'show'])])
  if (l.code !== 0 || a.code !== 0) throw new Error(`cannot read the container netns: ${l.stderr}${a.stderr}`)
  return {containerLink: l.stdout, containerAddr: a.stdout, labels: JSON.stringify(ctrd!.labels(CTRD_NS, WEB))}
}

afterAll(async () => {
  await ctrd?.stop()
})

describe('network connect -p with a real containerd', () => {
  beforeAll(async () => {
    ctrd = new PrivateContainerd('inj')
    await ctrd.start()
    webPid = ctrd.runContainer(CTRD_NS, WEB, {labels: {'nerdctl/name': 'web'}})
    // the same lab; this part's baseline adds the container's netns and labels
    const host0 = baseline
    baseline = await waitStable(containerState)
    const {containerLink: _l, containerAddr: _a, labels: _x, ...hostPart} = baseline
    expect(diff(host0, hostPart)).toEqual([])
  })

  const specs = [
    '8080:80/tcp\n--flush',
    '8080:80/icmp',
    '1.2.3.4 ! -s 1.1.1.1:8080:80',
    '70000:80',
    '8080:80/tcp -j ACCEPT',
    '8080:80/tcp#',
    "8080:80/tcp'",
    '8080:80/tcp\u2028',
    '８０８０:80',
    `8080:80/tcp${'A'.repeat(4989)}`,
  ]
  it.each(specs.map((s) => [esc(s.length > 40 ? `${s.slice(0, 20)}... (${s.length} chars)` : s), s]))('-p %s is refused, naming --publish; nothing changes', async (_n, spec) => {
    const c: Case = {
      name: spec,
      field: '--publish',
      run: () => cli(['network', 'connect', CONNECT_NET, 'web', '-p', spec], ctrdOpts()),
      cleanup: () => cli(['network', 'disconnect', CONNECT_NET, 'web'], ctrdOpts()),
    }
    const o = await runCase(c, containerState)
    tally('network connect -p', refusedCleanly(o, c.field))
    expectRefused(c, o)
  })
})

// ---- the valid controls ---------------------------------------------------------

describe('valid controls: the same chains with valid values work in the same lab', () => {
  it('cni add then cni del succeed; the sentinels stay', async () => {
    const caps = {
      portMappings: [{hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '10.255.0.2'}],
      ips: ['10.91.0.9/24'],
      mac: '0a:58:0a:5b:00:09',
      bandwidth: {ingressRate: 1000000, ingressBurst: 100000, egressRate: 1000000, egressBurst: 100000},
      dns: {nameservers: ['10.91.0.53'], search: ['example.com'], domain: 'example.com'},
      aliases: {[NET]: ['web']},
    }
    const args = ['--container-id', 'ok1', '--cap-args', JSON.stringify(caps), '--cni-args', 'IgnoreUnknown=1;K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=default']
    const add = await cli(['cni', 'add', NET, netnsPath(ctr), ...args])
    expect(add.code, add.stderr).toBe(0)
    const result = JSON.parse(add.stdout) as {ips: Array<{address: string}>}
    expect(result.ips.map((i) => i.address)).toEqual(['10.91.0.9/24'])
    const eth0 = (await inNetns(ctr, ['ip', '-o', 'link', 'show', 'dev', 'eth0'])).stdout
    expect(eth0).toContain('link/ether 0a:58:0a:5b:00:09')
    expect((await inNetns(ctr, ['cat', '/proc/sys/net/ipv4/conf/eth0/arp_notify'])).stdout.trim()).toBe('1')
    expect((await inHost(['ip', '-o', 'link', 'show'])).stdout).toContain(`: ${BRIDGE}:`)
    expect(readdirSync(join(host.dataDir, NET))).toContain('10.91.0.9')
    expect(readdirSync(join(host.cache, 'results'))).toEqual([`${NET}-ok1-eth0`])
    expect(readdirSync(tuningDir)).toEqual(['ok1_eth0.json'])
    // what the snapshot of a refused case would have caught
    const seen = diff(baseline, await snapshot()).map((d) => d.split(':')[0])
    expect(seen).toEqual(expect.arrayContaining(['ipt4', 'nft', 'link', 'addr', 'route4', 'ctrLink', 'ctrAddr', 'files']))
    const nat = (await inHost(['iptables-save', '-t', 'nat'])).stdout
    expect(nat).toMatch(/-A CNI-DN-[0-9a-f]+ .*-d 10\.255\.0\.2\/32 .*--dport 8080 .*--to-destination 10\.91\.0\.9:80/)
    expect(await sentinelsNow()).toEqual([])

    const del = await cli(['cni', 'del', NET, netnsPath(ctr), ...args])
    expect(del.code, del.stderr).toBe(0)
    expect(readdirSync(join(host.dataDir, NET)).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip'))).toEqual([])
    expect(readdirSync(join(host.cache, 'results'))).toEqual([])
    expect(readdirSync(tuningDir)).toEqual([])
    expect((await inHost(['iptables-save'])).stdout).not.toMatch(/CNI-DN-[0-9a-f]/)
    expect((await inNetns(ctr, ['ip', '-o', 'link', 'show'])).stdout).not.toContain('eth0')
    expect(await sentinelsNow()).toEqual([])
  })

  it('network connect -p 8080:80 then disconnect succeed; the sentinels stay', async () => {
    const con = await cli(['network', 'connect', CONNECT_NET, 'web', '-p', '8080:80'], ctrdOpts())
    expect(con.code, con.stderr).toBe(0)
    const s = await containerState()
    expect(s.containerAddr).toMatch(/inet 10\.94\.0\.\d+\/24/)
    expect(JSON.parse(s.labels)['nerdctl/networks']).toBe(`["${CONNECT_NET}"]`)
    expect((await inHost(['iptables-save', '-t', 'nat'])).stdout).toMatch(/--dport 8080 .*--to-destination 10\.94\.0\.\d+:80/)
    expect(await sentinelsNow()).toEqual([])
    const dis = await cli(['network', 'disconnect', CONNECT_NET, 'web'], ctrdOpts())
    expect(dis.code, dis.stderr).toBe(0)
    expect((await containerState()).containerAddr).not.toMatch(/10\.94\.0\./)
    expect(await sentinelsNow()).toEqual([])
  })
})

/**
 * Shared pieces of the reliability suites: a throwaway "host" netns with its
 * own config, cache and host-local dirs, the CLI run inside it, and exact
 * accounting of what attachments leave behind (leases, iptables chains and
 * rules, veths, cache and journal entries).
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, existsSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {createHash} from 'node:crypto'
import {createNetns, destroyNetns, nsTry} from '../helpers/netns.js'
import type {ExecResult} from '../../src/sys/exec.js'

export const REPO = fileURLToPath(new URL('../..', import.meta.url))
export const CLI = join(REPO, 'bin', 'run.js')

export interface Lab {
  host: string
  dir: string
  conf: string
  cache: string
  data: string
  net: string
  bridge: string
  subnet: string
  cli(args: string[], env?: NodeJS.ProcessEnv): Promise<ExecResult>
  cleanup(): Promise<void>
}

/** nerdctl's default chain (bridge, portmap, firewall, tuning) with a private dataDir. */
export function nerdctlChain(name: string, bridge: string, subnet: string, gateway: string, dataDir: string): object {
  return {
    cniVersion: '1.0.0',
    name,
    plugins: [
      {
        type: 'bridge',
        bridge,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: {ranges: [[{gateway, subnet}]], routes: [{dst: '0.0.0.0/0'}], type: 'host-local', dataDir},
      },
      {type: 'portmap', capabilities: {portMappings: true}},
      {type: 'firewall', ingressPolicy: 'same-bridge'},
      {type: 'tuning'},
    ],
  }
}

export async function makeLab(tag: string, opts: {subnet?: string; gateway?: string} = {}): Promise<Lab> {
  const host = await createNetns('rl', tag)
  const dir = mkdtempSync(join(tmpdir(), `ctrnet-rl-${tag}-`))
  const conf = join(dir, 'net.d')
  const cache = join(dir, 'cache')
  const data = join(dir, 'ipam')
  mkdirSync(conf, {recursive: true})
  const net = `rl${tag}`
  const bridge = `br-rl${tag}`.slice(0, 15)
  const subnet = opts.subnet ?? '10.77.0.0/24'
  const gateway = opts.gateway ?? subnet.replace(/\.0\/\d+$/, '.1')
  writeFileSync(join(conf, `${net}.conflist`), JSON.stringify(nerdctlChain(net, bridge, subnet, gateway, data), null, 2))
  const lab: Lab = {
    host,
    dir,
    conf,
    cache,
    data,
    net,
    bridge,
    subnet,
    cli: (args, env) => {
      const dirs = [
        ...(args.includes('--cni-netconfpath') ? [] : ['--cni-netconfpath', conf]),
        ...(args.includes('--cni-cachedir') ? [] : ['--cni-cachedir', cache]),
      ]
      // `--` ends the flags: keep the dirs before it
      const i = args.indexOf('--')
      const argv = i < 0 ? [...args, ...dirs] : [...args.slice(0, i), ...dirs, ...args.slice(i)]
      const envs = Object.entries(env ?? {}).map(([k, v]) => `${k}=${v}`)
      return nsTry(host, ['env', ...envs, process.execPath, CLI, ...argv], {timeoutMs: 120_000})
    },
    cleanup: async () => {
      await destroyNetns(host)
      rmSync(dir, {recursive: true, force: true})
    },
  }
  return lab
}

/** iptables chain names the reference derives from network name + container id. */
export function chains(net: string, cid: string): {masq: string; dnat: string} {
  const h = createHash('sha512').update(net + cid).digest('hex')
  return {masq: `CNI-${h.slice(0, 24)}`, dnat: `CNI-DN-${h.slice(0, 21)}`}
}

export interface Account {
  leases: Record<string, string>
  veths: string[]
  masqChains: string[]
  dnatChains: string[]
  dnatJumps: number
  postroutingJumps: number
  firewallRules: number
  cache: string[]
  pending: string[]
  iptables: string
}

/** Exact accounting of what the attachments of a lab leave behind. */
export async function account(lab: Lab): Promise<Account> {
  const leaseDir = join(lab.data, lab.net)
  const leases: Record<string, string> = {}
  if (existsSync(leaseDir)) {
    for (const f of readdirSync(leaseDir)) {
      if (f === 'lock' || f.startsWith('last_reserved_ip')) continue
      leases[f] = readFileSync(join(leaseDir, f), 'utf8')
    }
  }
  const links = await nsTry(lab.host, ['ip', '-j', 'link', 'show'])
  const veths = (JSON.parse(links.stdout || '[]') as Array<{ifname: string}>).map((l) => l.ifname).filter((n) => n.startsWith('veth'))
  const ipt = (await nsTry(lab.host, ['iptables-save'])).stdout
  const lines = ipt.split('\n')
  const ls = (d: string) => (existsSync(d) ? readdirSync(d).filter((f) => !f.startsWith('.')) : [])
  return {
    leases,
    veths,
    masqChains: lines.filter((l) => /^:CNI-[0-9a-f]{24} /.test(l)).map((l) => l.split(' ')[0].slice(1)),
    dnatChains: lines.filter((l) => /^:CNI-DN-[0-9a-f]{21} /.test(l)).map((l) => l.split(' ')[0].slice(1)),
    dnatJumps: lines.filter((l) => l.startsWith('-A CNI-HOSTPORT-DNAT ') && l.includes('-j CNI-DN-')).length,
    postroutingJumps: lines.filter((l) => l.startsWith('-A POSTROUTING ') && /-j CNI-[0-9a-f]{24}/.test(l)).length,
    firewallRules: lines.filter((l) => /^-A CNI-FORWARD -[ds] \d/.test(l)).length,
    cache: ls(join(lab.cache, 'results')),
    pending: ls(join(lab.cache, 'ctrnet', 'pending')),
    iptables: ipt,
  }
}

/** True when nothing of any attachment is left. */
export function isClean(a: Account): boolean {
  return (
    Object.keys(a.leases).length === 0 &&
    a.veths.length === 0 &&
    a.masqChains.length === 0 &&
    a.dnatChains.length === 0 &&
    a.dnatJumps === 0 &&
    a.postroutingJumps === 0 &&
    a.firewallRules === 0 &&
    a.cache.length === 0 &&
    a.pending.length === 0
  )
}

export function summary(a: Account): string {
  const {iptables: _i, ...rest} = a
  return JSON.stringify(rest)
}

/**
 * Every file of the lab's lease dir other than `lock` and `last_reserved_ip.*`
 * (dot files too: a temp file left by a killed writer), with its size: after a
 * DEL this must be empty, and an entry of size 0 is a torn lease.
 */
export function leaseDirFiles(lab: Lab): Array<{name: string; size: number}> {
  const d = join(lab.data, lab.net)
  if (!existsSync(d)) return []
  return readdirSync(d)
    .filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip.'))
    .map((name) => ({name, size: statSync(join(d, name)).size}))
}

/** Starts `cni add` in the lab (not awaited) so that it can be killed. */
export function spawnAdd(lab: Lab, netns: string, cid: string, port: number): {child: ChildProcess; exited: Promise<number | null>; started: number} {
  const child = spawn('ip', ['netns', 'exec', lab.host, process.execPath, CLI, 'cni', 'add', lab.net, netns, '--container-id', cid, '-p', `${port}:80`, '--cni-netconfpath', lab.conf, '--cni-cachedir', lab.cache], {stdio: 'ignore'})
  const started = Date.now()
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
  return {child, exited, started}
}

/**
 * How far an ADD of `cid` (ifname eth0) got, in the order the ADD goes:
 * journal written, then bridge (veth and lease in parallel), journal updated
 * with the addresses, iptables rules of the whole chain in one transaction,
 * cache entry written and journal removed.
 */
export const PHASES = ['no journal', 'journal without addresses', 'veth present', 'journal with addresses', 'rules present', 'completed'] as const
export type Phase = (typeof PHASES)[number]

export async function addPhase(lab: Lab, cid: string): Promise<{phase: Phase; detail: string}> {
  const name = `${lab.net}-${cid}-eth0`
  const pendingPath = join(lab.cache, 'ctrnet', 'pending', name)
  const journal = existsSync(pendingPath) ? (JSON.parse(readFileSync(pendingPath, 'utf8')) as {result?: {ips?: unknown[]}}) : undefined
  const cached = existsSync(join(lab.cache, 'results', name))
  const a = await account(lab)
  const c = chains(lab.net, cid)
  const rules = a.masqChains.includes(c.masq) || a.dnatChains.includes(c.dnat) || a.firewallRules > 0
  const lease = Object.values(a.leases).some((v) => v.split('\r\n')[0] === cid)
  const detail = `journal=${journal ? (journal.result?.ips?.length ? 'addresses' : 'bare') : 'none'} veth=${a.veths.length} lease=${lease} rules=${rules} cache=${cached}`
  let phase: Phase = 'no journal'
  if (cached) phase = 'completed'
  else if (rules) phase = 'rules present'
  else if (journal?.result?.ips?.length) phase = 'journal with addresses'
  else if (journal && a.veths.length > 0) phase = 'veth present'
  else if (journal) phase = 'journal without addresses'
  return {phase, detail}
}

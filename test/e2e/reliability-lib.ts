/**
 * Shared pieces of the reliability suites: a throwaway "host" netns with its
 * own config, cache and host-local dirs, the CLI run inside it, and exact
 * accounting of what attachments leave behind (leases, iptables chains and
 * rules, veths, cache and journal entries).
 */
import {mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {createHash} from 'node:crypto'
import {createNetns, destroyNetns, nsTry} from '../helpers/netns.js'
import type {ExecResult} from '../../src/lib/exec.js'

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

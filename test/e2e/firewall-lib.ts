/**
 * Shared by the firewall e2e tests (firewall-exposure, firewall-backend,
 * nftables-host): a throwaway "host" netns where the CLI runs (`cni add/del`,
 * `network create/rm`) with its own config, cache and /var/lib; a neighbour
 * netns N on the host's link (10.250.0.0/24) with a route to 10.251.0.0/16
 * via the host and a TCP server on port 9000; container netns with a TCP
 * server on port 80 each. Every server answers `hi <name> <peer address>`.
 * Also: a PATH that hides programs (a host "without iptables").
 */
import {spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {createNetns, linkNetns, netnsPath, nsSpawn} from '../helpers/netns.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const CLI = process.env.CTRNET_TEST_CLI || join(ROOT, 'bin', 'run.js')
export const HOST_IP = '10.250.0.1'
export const NEIGHBOUR_IP = '10.250.0.2'
const SERVER = "require('net').createServer((s) => s.end('hi ' + process.argv[1] + ' ' + s.remoteAddress.replace(/^::ffff:/, ''))).listen(Number(process.argv[2]), process.argv[3])"

export function must(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, {encoding: 'utf8', maxBuffer: 64 << 20})
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** The server's answer (`hi <name> <peer>`) to `from` from ip:port within 2 s, or ''. */
export function hello(from: string, ip: string, port: number): string {
  const r = spawnSync('ip', ['netns', 'exec', from, 'timeout', '2', 'bash', '-c', `exec 3<>/dev/tcp/${ip}/${port} && cat <&3`], {encoding: 'utf8'})
  return r.status === 0 && r.stdout.startsWith('hi ') ? r.stdout : ''
}

/** True when `from` gets the server's greeting from ip:port within 2 s. */
export function tcp(from: string, ip: string, port: number): boolean {
  return hello(from, ip, port) !== ''
}

export function ping(from: string, ip: string): boolean {
  return spawnSync('ip', ['netns', 'exec', from, 'busybox', 'ping', '-c', '1', '-W', '1', ip]).status === 0
}

/** The iptables programs (iptables*, ip6tables*: -save, -restore, -legacy, -nft...). */
export const NO_IPTABLES = /^ip6?tables/

/** A PATH of one dir under `base`: symlinks to every program on this PATH whose name `hide` does not match. */
export function pathHiding(base: string, tag: string, hide: RegExp): string {
  const dir = join(base, `path-${tag}`)
  mkdirSync(dir)
  for (const d of (process.env.PATH ?? '').split(':').filter(Boolean)) {
    if (!existsSync(d)) continue
    for (const name of readdirSync(d)) {
      if (hide.test(name) || existsSync(join(dir, name))) continue
      symlinkSync(join(d, name), join(dir, name))
    }
  }
  return dir
}

export interface Container {
  ns: string
  ip: string
  net: string
  ports: string[]
}

export class Host {
  ns = ''
  neighbour = ''
  base = ''
  readonly stops: Array<() => void> = []
  readonly containers = new Map<string, Container>()
  before = ''

  /** `policy`: the FORWARD policy set in iptables before anything runs; `env`: added to the CLI's environment. */
  constructor(
    readonly prefix: string,
    readonly policy?: 'ACCEPT' | 'DROP',
    public env: NodeJS.ProcessEnv = {},
  ) {}

  async setup(): Promise<void> {
    this.base = mkdtempSync(join(tmpdir(), `${this.prefix}-`))
    for (const d of ['conf', 'cache', 'varlib/cni']) mkdirSync(join(this.base, d), {recursive: true})
    this.ns = await createNetns(this.prefix, `host${this.policy ?? ''}`)
    this.neighbour = await createNetns(this.prefix, 'nb')
    await linkNetns(this.ns, 'h22up', [`${HOST_IP}/24`], this.neighbour, 'eth0', [`${NEIGHBOUR_IP}/24`])
    must('ip', ['-n', this.neighbour, 'route', 'add', '10.251.0.0/16', 'via', HOST_IP])
    must('ip', ['netns', 'exec', this.ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    if (this.policy === 'DROP') must('ip', ['netns', 'exec', this.ns, 'iptables', '-P', 'FORWARD', 'DROP'])
    this.before = this.iptablesSave()
    const srv = await nsSpawn(this.neighbour, [process.execPath, '-e', SERVER, 'neighbour', '9000', NEIGHBOUR_IP])
    this.stops.push(srv.stop)
  }

  teardown(): void {
    for (const s of this.stops) s()
    if (this.base) rmSync(this.base, {recursive: true, force: true})
  }

  cli(args: string[]): {code: number; stdout: string; stderr: string} {
    const varlib = join(this.base, 'varlib')
    const r = spawnSync(
      'ip',
      [
        'netns', 'exec', this.ns, 'sh', '-c', 'mount --bind "$0" /var/lib && exec "$@"', varlib,
        process.execPath, CLI, ...args, '--cni-netconfpath', join(this.base, 'conf'), '--cni-cachedir', join(this.base, 'cache'),
      ],
      {encoding: 'utf8', input: '', env: {...process.env, CONTAINERD_ADDRESS: join(this.base, 'no-containerd.sock'), DEBUG: '', ...this.env}},
    )
    return {code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr}
  }

  ok(args: string[]): string {
    const r = this.cli(args)
    if (r.code !== 0) throw new Error(`ctrnet ${args.join(' ')}: ${r.stderr}`)
    return r.stdout
  }

  conflist(name: string): {plugins: Array<Record<string, unknown>>} {
    const dir = join(this.base, 'conf')
    for (const f of readdirSync(dir, {recursive: true}) as string[]) {
      if (!f.endsWith('.conflist')) continue
      const c = JSON.parse(readFileSync(join(dir, f), 'utf8')) as {name: string; plugins: Array<Record<string, unknown>>}
      if (c.name === name) return c
    }
    throw new Error(`no conflist for ${name} in ${JSON.stringify(readdirSync(dir, {recursive: true}))}`)
  }

  /** A container on `net` with a server on port 80; published ports as `-p` specs. */
  async container(name: string, net: string, ports: string[] = []): Promise<string> {
    const ns = await createNetns(this.prefix, name)
    const out = this.ok(['cni', 'add', net, netnsPath(ns), '--container-id', `${this.prefix}-${name}`, ...ports.flatMap((p) => ['-p', p])])
    const ip = (JSON.parse(out) as {ips: Array<{address: string}>}).ips[0]!.address.split('/')[0]!
    const srv = await nsSpawn(ns, [process.execPath, '-e', SERVER, name, '80', '0.0.0.0'])
    this.stops.push(srv.stop)
    this.containers.set(name, {ns, ip, net, ports})
    return ip
  }

  /** `cni del` of every container, with the ports it was added with. */
  delAll(): void {
    for (const [name, c] of this.containers) {
      this.ok(['cni', 'del', c.net, netnsPath(c.ns), '--container-id', `${this.prefix}-${name}`, ...c.ports.flatMap((p) => ['-p', p])])
    }
  }

  c(name: string): Container {
    return this.containers.get(name)!
  }

  /** `iptables-save` (or `ip6tables-save`) of the host netns, without comments and counters. */
  iptablesSave(program = 'iptables-save'): string {
    return must('ip', ['netns', 'exec', this.ns, program])
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.replace(/\[\d+:\d+\]/, '[0:0]'))
      .join('\n')
  }

  setBrNetfilter(on: boolean): void {
    must('ip', ['netns', 'exec', this.ns, 'sysctl', '-qw', `net.bridge.bridge-nf-call-iptables=${on ? 1 : 0}`])
  }

  /** Waits until the servers answer (they start asynchronously). */
  async settle(names: string[]): Promise<void> {
    for (const n of names) {
      const {ns, ip} = this.c(n)
      for (let i = 0; i < 50 && !tcp(ns, ip, 80); i++) await new Promise((r) => setTimeout(r, 100))
    }
    for (let i = 0; i < 50 && !tcp(this.ns, NEIGHBOUR_IP, 9000); i++) await new Promise((r) => setTimeout(r, 100))
  }
}

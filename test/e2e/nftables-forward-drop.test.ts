/**
 * Issue 22 item 5, nftables side: a network on the nftables backend on a host
 * whose iptables FORWARD policy is DROP. The accepts of table inet ctrnet set
 * mark 0x10000000 and ONE generic rule per family in iptables' filter FORWARD
 * accepts that mark; the policy stays DROP; the containers go out, a
 * neighbour reaches the published port and the routed network, not the
 * unpublished containers; the rules go with the last bridge (network rm),
 * never with a DEL.
 *
 * A throwaway "host" netns (h22d-*) with `iptables -P FORWARD DROP` and
 * `ip6tables -P FORWARD DROP`, the CLI run inside it (`network create
 * --firewall-backend nftables`, `cni add/del`, `network rm`) with its own
 * config, cache, /var/lib and lock dir (CTRNET_IPTABLES_LOCK: the state file
 * of the generic rule lives next to the lock); a neighbour netns on the
 * host's link with a route to 10.252.0.0/16 via the host.
 */
import {spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, unlinkSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {createNetns, linkNetns, netnsPath, nsSpawn, useNetnsCleanup} from '../helpers/netns.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const CLI = process.env.CTRNET_TEST_CLI || join(ROOT, 'bin', 'run.js')
const HOST_IP = '10.249.0.1'
const NEIGHBOUR_IP = '10.249.0.2'
const SERVER = "require('net').createServer((s) => s.end('hi ' + process.argv[1])).listen(Number(process.argv[2]), process.argv[3])"
const RULE = '-A FORWARD -m mark --mark 0x10000000/0x10000000 -m comment --comment "ctrnet: accepted in nftables table inet ctrnet" -j ACCEPT'

useNetnsCleanup(afterAll)

function must(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** True when `from` gets the server's greeting from ip:port within 2 s. */
function tcp(from: string, ip: string, port: number): boolean {
  const r = spawnSync('ip', ['netns', 'exec', from, 'timeout', '2', 'bash', '-c', `exec 3<>/dev/tcp/${ip}/${port} && cat <&3`], {encoding: 'utf8'})
  return r.status === 0 && r.stdout.startsWith('hi ')
}

let base = ''
let host = ''
let neighbour = ''
const stops: Array<() => void> = []
const containers = new Map<string, {ns: string; ip: string; net: string; ports: string[]}>()

function cli(args: string[]): {code: number; stdout: string; stderr: string} {
  const varlib = join(base, 'varlib')
  const r = spawnSync(
    'ip',
    [
      'netns', 'exec', host, 'sh', '-c', 'mount --bind "$0" /var/lib && exec "$@"', varlib,
      process.execPath, CLI, ...args, '--cni-netconfpath', join(base, 'conf'), '--cni-cachedir', join(base, 'cache'),
    ],
    {
      encoding: 'utf8',
      input: '',
      env: {...process.env, CONTAINERD_ADDRESS: join(base, 'no-containerd.sock'), CTRNET_IPTABLES_LOCK: join(base, 'lock', 'fw.lock'), DEBUG: ''},
    },
  )
  return {code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr}
}

function ok(args: string[]): string {
  const r = cli(args)
  if (r.code !== 0) throw new Error(`ctrnet ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

function save(bin: 'iptables-save' | 'ip6tables-save'): string[] {
  return must('ip', ['netns', 'exec', host, bin, '-t', 'filter']).split('\n')
}

const stateFiles = () => readdirSync(join(base, 'lock')).filter((f) => f.startsWith('nftables-iptables-accept.'))

async function container(name: string, net: string, ports: string[] = []): Promise<string> {
  const ns = await createNetns('h22d', name)
  const out = ok(['cni', 'add', net, netnsPath(ns), '--container-id', `h22d-${name}`, ...ports.flatMap((p) => ['-p', p])])
  const ip = (JSON.parse(out) as {ips: Array<{address: string}>}).ips[0]!.address.split('/')[0]!
  stops.push((await nsSpawn(ns, [process.execPath, '-e', SERVER, name, '80', '0.0.0.0'])).stop)
  containers.set(name, {ns, ip, net, ports})
  for (let i = 0; i < 50 && !tcp(ns, ip, 80); i++) await new Promise((r) => setTimeout(r, 100))
  return ip
}

beforeAll(async () => {
  base = mkdtempSync(join(tmpdir(), 'h22d-'))
  for (const d of ['conf', 'cache', 'varlib/cni', 'lock']) mkdirSync(join(base, d), {recursive: true})
  host = await createNetns('h22d', 'host')
  neighbour = await createNetns('h22d', 'nb')
  await linkNetns(host, 'h22dup', [`${HOST_IP}/24`], neighbour, 'eth0', [`${NEIGHBOUR_IP}/24`])
  must('ip', ['-n', neighbour, 'route', 'add', '10.252.0.0/16', 'via', HOST_IP])
  must('ip', ['netns', 'exec', host, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
  must('ip', ['netns', 'exec', host, 'iptables', '-P', 'FORWARD', 'DROP'])
  must('ip', ['netns', 'exec', host, 'ip6tables', '-P', 'FORWARD', 'DROP'])
  stops.push((await nsSpawn(neighbour, [process.execPath, '-e', SERVER, 'neighbour', '9000', NEIGHBOUR_IP])).stop)
  for (let i = 0; i < 50 && !tcp(host, NEIGHBOUR_IP, 9000); i++) await new Promise((r) => setTimeout(r, 100))
  ok(['network', 'create', 'h22dpub', '--firewall-backend', 'nftables', '-o', 'com.docker.network.bridge.name=h22dpub0', '--subnet', '10.252.2.0/24'])
  ok(['network', 'create', 'h22drt', '--firewall-backend', 'nftables', '-o', 'com.docker.network.bridge.gateway_mode_ipv4=routed', '-o', 'com.docker.network.bridge.name=h22drt0', '--subnet', '10.252.3.0/24'])
  await container('p1', 'h22dpub', ['8083:80/tcp'])
  await container('p2', 'h22dpub')
}, 120_000)

afterAll(() => {
  for (const s of stops) s()
  if (base) rmSync(base, {recursive: true, force: true})
})

describe.sequential('nftables backend under iptables FORWARD policy DROP', () => {
  it('one generic accept of the mark per family in iptables FORWARD; the policy stays DROP', () => {
    for (const bin of ['iptables-save', 'ip6tables-save'] as const) {
      const lines = save(bin)
      expect(lines.filter((l) => l.startsWith(':FORWARD '))[0]).toMatch(/^:FORWARD DROP /)
      expect(lines.filter((l) => l.startsWith('-A FORWARD'))).toEqual([RULE])
    }
    const rs = must('ip', ['netns', 'exec', host, 'nft', 'list', 'table', 'inet', 'ctrnet'])
    expect(rs).toContain('ip saddr @fwd4 meta mark set meta mark | 0x10000000 accept')
    expect(rs).toContain('ip daddr @fwd4 ct status dnat meta mark set meta mark | 0x10000000 accept')
    expect(stateFiles()).toHaveLength(1)
  })

  it('the containers reach the outside; a neighbour reaches the published port, not the unpublished containers', () => {
    const [p1, p2] = [containers.get('p1')!, containers.get('p2')!]
    expect(tcp(p1.ns, NEIGHBOUR_IP, 9000)).toBe(true)
    expect(tcp(p2.ns, NEIGHBOUR_IP, 9000)).toBe(true)
    expect(tcp(neighbour, HOST_IP, 8083)).toBe(true)
    expect(tcp(neighbour, p1.ip, 80)).toBe(false)
    expect(tcp(neighbour, p2.ip, 80)).toBe(false)
    // containers of one bridge still talk
    expect(tcp(p2.ns, p1.ip, 80)).toBe(true)
  })

  it('without the generic rule the policy drops it all (the mark is what lets it through)', async () => {
    must('ip', ['netns', 'exec', host, 'iptables', '-D', ...RULE.slice(3).match(/"[^"]*"|\S+/g)!.map((t) => t.replace(/^"|"$/g, ''))])
    const p1 = containers.get('p1')!
    expect(tcp(p1.ns, NEIGHBOUR_IP, 9000)).toBe(false)
    expect(tcp(neighbour, HOST_IP, 8083)).toBe(false)
    // an ADD trusts the state file for a while; once it is gone (or stale) the next ADD installs the rule again
    unlinkSync(join(base, 'lock', stateFiles()[0]!))
    await container('r1', 'h22drt')
    expect(save('iptables-save').filter((l) => l.startsWith('-A FORWARD'))).toEqual([RULE])
    expect(tcp(p1.ns, NEIGHBOUR_IP, 9000)).toBe(true)
    expect(tcp(neighbour, HOST_IP, 8083)).toBe(true)
  })

  it('a routed network is reached directly', () => {
    const r1 = containers.get('r1')!
    expect(tcp(neighbour, r1.ip, 80)).toBe(true)
    expect(tcp(r1.ns, NEIGHBOUR_IP, 9000)).toBe(true)
  })

  it('cni del keeps the generic rules; network rm of the last bridge removes them, the policy stays DROP', () => {
    for (const [name, c] of containers) ok(['cni', 'del', c.net, netnsPath(c.ns), '--container-id', `h22d-${name}`, ...c.ports.flatMap((p) => ['-p', p])])
    for (const bin of ['iptables-save', 'ip6tables-save'] as const) expect(save(bin)).toContain(RULE)
    ok(['network', 'rm', 'h22dpub'])
    // the routed bridge is still in inet ctrnet
    for (const bin of ['iptables-save', 'ip6tables-save'] as const) expect(save(bin)).toContain(RULE)
    ok(['network', 'rm', 'h22drt'])
    for (const bin of ['iptables-save', 'ip6tables-save'] as const) {
      const lines = save(bin)
      expect(lines.filter((l) => l.startsWith('-A FORWARD'))).toEqual([])
      expect(lines.filter((l) => l.startsWith(':FORWARD '))[0]).toMatch(/^:FORWARD DROP /)
    }
    expect(stateFiles()).toEqual([])
    expect(existsSync(join(base, 'lock'))).toBe(true)
  })
})

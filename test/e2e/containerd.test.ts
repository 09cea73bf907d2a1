/**
 * network connect / disconnect / inspect / rm against a real containerd and
 * runc (a private daemon on its own socket, root and state dir), with
 * busybox-static containers in their own network namespaces. The CLI runs
 * inside a throwaway host namespace; see containerd-harness.ts.
 */
import {existsSync, readdirSync, readFileSync, readlinkSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {HostNs, PrivateContainerd, sh, type RunResult} from './containerd-harness.js'

const NS = 'h4x'
let ctrd: PrivateContainerd
let host: HostNs

function cli(args: string[], opts: {namespace?: string; address?: string; cacheDir?: string} = {}): RunResult {
  return host.cli(args, {address: opts.address ?? ctrd.address, namespace: opts.namespace ?? NS, cacheDir: opts.cacheDir})
}

function ok(args: string[]): string {
  const r = cli(args)
  if (r.code !== 0) throw new Error(`ctrnet ${args.join(' ')} -> exit ${r.code}: ${r.stderr}`)
  return r.stdout
}

/** The one line ctrnet prints on failure, with its exit code. */
function fails(args: string[], opts?: {namespace?: string; address?: string}): string {
  const r = cli(args, opts)
  expect(r.code, `expected failure of ${args.join(' ')}; stdout ${r.stdout}`).not.toBe(0)
  const lines = r.stderr.trim().split('\n')
  expect(lines, r.stderr).toHaveLength(1)
  expect(lines[0]).toMatch(/^ctrnet: /)
  return lines[0]
}

function cacheEntries(): string[] {
  const d = join(host.cache, 'results')
  return existsSync(d) ? readdirSync(d).sort() : []
}

function pendingEntries(): string[] {
  const d = join(host.cache, 'ctrnet', 'pending')
  return existsSync(d) ? readdirSync(d).sort() : []
}

/** One link of `ip -j addr show`. */
interface NetnsLink {
  ifname: string
  link_type?: string
  address?: string
  addr_info?: Array<{family: string; local: string; prefixlen: number}>
}

/**
 * Every link, with its addresses, of the container's network namespace, read
 * through the task's pid with nsenter (a `ctr task exec` can fail under load).
 * Never an empty answer in place of an error: throws when the task has no pid,
 * when nsenter or ip fails, or when the listing lacks lo (then it was not a
 * network namespace that got listed).
 */
function containerNetns(id: string): {pid: number; links: Map<string, NetnsLink>} {
  const pid = ctrd.taskPid(NS, id)
  const r = sh('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', '-j', 'addr', 'show'])
  if (r.code !== 0) throw new Error(`nsenter --net=/proc/${pid}/ns/net ip -j addr show (task ${id}) -> exit ${r.code}: ${r.stderr.trim()}`)
  const links = new Map((JSON.parse(r.stdout) as NetnsLink[]).map((l) => [l.ifname, l]))
  if (!links.has('lo')) throw new Error(`no lo listed in the netns of task ${id} (pid ${pid}): ${r.stdout}`)
  return {pid, links}
}

/** Addresses (CIDR, no link-local IPv6) of one link of a netns listing; [] when the link is not there. */
function addrsIn(links: Map<string, NetnsLink>, ifName: string): string[] {
  return (links.get(ifName)?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`).filter((a) => !a.startsWith('fe80:'))
}

/** The container's eth* links (a fresh netns may also hold the kernel's fallback tunnel devices). */
function ethLinks(links: Map<string, NetnsLink>): string[] {
  return [...links.keys()].filter((n) => /^eth/.test(n)).sort()
}

/** Addresses (CIDR) of an interface inside the container ([] if it has none or is not there). */
function containerAddrs(id: string, ifName: string): string[] {
  return addrsIn(containerNetns(id).links, ifName)
}

/** The MAC of an interface inside the container; throws if it is not there. */
function containerMac(id: string, ifName: string): string {
  const link = containerNetns(id).links.get(ifName)
  if (!link?.address || link.link_type !== 'ether') throw new Error(`no ethernet link ${ifName} in task ${id}: ${JSON.stringify(link)}`)
  return link.address
}

/**
 * Before asserting that something is absent from a container: its task is
 * running, its pid exists and has a network namespace of its own (not ours),
 * and that namespace was entered (lo is listed in it). Returns the listing the
 * absence is then asserted on.
 */
function liveNetns(id: string): Map<string, NetnsLink> {
  expect(ctrd.taskStatus(NS, id), `task ${id} must be running`).toBe('RUNNING')
  const {pid, links} = containerNetns(id)
  expect(existsSync(`/proc/${pid}`), `pid ${pid} of task ${id} must exist`).toBe(true)
  expect(readlinkSync(`/proc/${pid}/ns/net`), `task ${id} must have a netns of its own`).not.toBe(readlinkSync('/proc/self/ns/net'))
  expect([...links.keys()], `lo must be listed in the netns of task ${id}`).toContain('lo')
  return links
}

/** The host namespace's links (`ip -o link show`); throws if they cannot be listed or lack lo. */
function hostLinks(): string {
  const r = host.exec('ip', ['-o', 'link', 'show'])
  if (r.code !== 0) throw new Error(`ip -o link show in ${host.name} -> exit ${r.code}: ${r.stderr.trim()}`)
  if (!/^\d+: lo:/m.test(r.stdout)) throw new Error(`no lo listed in ${host.name}: ${r.stdout}`)
  return r.stdout
}

/** `iptables-save` of the host namespace; throws if it fails. */
function hostRules(): string {
  const r = host.exec('iptables-save', [])
  if (r.code !== 0) throw new Error(`iptables-save in ${host.name} -> exit ${r.code}: ${r.stderr.trim()}`)
  return r.stdout
}

function labelNetworks(id: string): string | undefined {
  return ctrd.labels(NS, id)['nerdctl/networks']
}

function inspect(network: string): Record<string, {Name: string; MacAddress: string; IPv4Address: string; IPv6Address: string; DNSNames: string[]}> {
  const out = JSON.parse(ok(['network', 'inspect', network])) as Array<{Containers: Record<string, never>}>
  return out[0].Containers
}

function hostPing(ip: string): number {
  return host.exec('busybox', ['ping', '-c', '1', '-W', '2', ip]).code
}

function ipOf(cidr: string): string {
  return cidr.split('/')[0]
}

beforeAll(async () => {
  ctrd = new PrivateContainerd('h4x')
  await ctrd.start()
  host = new HostNs('h4x')
  host.createNetwork('net1', ['--subnet', '10.44.1.0/24'], NS)
  host.createNetwork('net2', ['--subnet', '10.44.2.0/24'], NS)
  ctrd.runContainer(NS, 'h4x-web-0123456789', {labels: {'nerdctl/name': 'web'}})
  ctrd.runContainer(NS, 'h4x-peer-abcdef', {labels: {'nerdctl/name': 'peer'}})
})

afterAll(async () => {
  await ctrd?.stop()
  host?.cleanup()
})

describe('network connect / disconnect with containerd', () => {
  let webIp = ''

  it('connects a running container by its nerdctl/name, with a port forward', () => {
    ok(['network', 'connect', 'net1', 'web', '-p', '8080:80'])
    const addrs = containerAddrs('h4x-web-0123456789', 'eth0')
    expect(addrs).toHaveLength(1)
    expect(addrs[0]).toMatch(/^10\.44\.1\.\d+\/24$/)
    webIp = ipOf(addrs[0])
    // the label nerdctl reads, exactly as nerdctl writes it
    expect(labelNetworks('h4x-web-0123456789')).toBe('["net1"]')
    // the CNI cache entry under nerdctl's container id <namespace>-<id>
    expect(cacheEntries()).toEqual(['net1-h4x-h4x-web-0123456789-eth0'])
    const cached = JSON.parse(readFileSync(join(host.cache, 'results', 'net1-h4x-h4x-web-0123456789-eth0'), 'utf8'))
    expect(cached.containerId).toBe('h4x-h4x-web-0123456789')
    expect(cached.capabilityArgs).toEqual({portMappings: [{containerPort: 80, hostPort: 8080, protocol: 'tcp'}]})
    expect(cached.cniArgs).toContainEqual(['IgnoreUnknown', '1'])
    expect(cached.netns).toBe(`/proc/${ctrd.taskPid(NS, 'h4x-web-0123456789')}/ns/net`)
    // the host-local lease
    expect(host.leases('net1')).toEqual([webIp])
    expect(readFileSync(join(host.dataDir, 'net1', webIp), 'utf8')).toBe('h4x-h4x-web-0123456789\r\neth0')
  })

  it('is reachable from the host namespace', () => {
    expect(hostPing(webIp)).toBe(0)
  })

  it('forwards the published port to busybox httpd in the container', () => {
    // (busybox wget -T crashes on this busybox; sh() has its own timeout)
    for (const addr of ['10.44.1.1', '127.0.0.1']) {
      const r = host.exec('busybox', ['wget', '-q', '-O', '-', `http://${addr}:8080/`])
      expect({addr, code: r.code, out: r.stdout}).toEqual({addr, code: 0, out: 'hello from h4x-h4x-web-0123456789\n'})
    }
  })

  it('lists the container in network inspect', () => {
    const containers = inspect('net1')
    expect(containers).toEqual({
      'h4x-web-0123456789': {
        Name: 'web',
        MacAddress: containerMac('h4x-web-0123456789', 'eth0'),
        IPv4Address: `${webIp}/24`,
        IPv6Address: '',
        DNSNames: ['web', 'h4x-web-0123456789', 'h4x-web-0123'],
      },
    })
  })

  it('connects a second container by id prefix; the containers reach each other', () => {
    ok(['network', 'connect', 'net1', 'h4x-peer'])
    const peer = containerAddrs('h4x-peer-abcdef', 'eth0')
    expect(peer).toHaveLength(1)
    expect(peer[0]).not.toBe(`${webIp}/24`)
    expect(ctrd.exec(NS, 'h4x-peer-abcdef', ['ping', '-c', '1', '-W', '2', webIp]).code).toBe(0)
    expect(ctrd.exec(NS, 'h4x-web-0123456789', ['ping', '-c', '1', '-W', '2', ipOf(peer[0])]).code).toBe(0)
    expect(Object.keys(inspect('net1')).sort()).toEqual(['h4x-peer-abcdef', 'h4x-web-0123456789'])
  })

  it('refuses to remove a network in use, naming the containers (nerdctl format)', () => {
    const line = fails(['network', 'rm', 'net1'])
    expect(line).toContain('network "net1" is in use by container')
    expect(line).toContain('h4x-web-0123456789')
    expect(existsSync(host.confPath('net1', NS))).toBe(true)
  })

  it('counts a container that only has nerdctl\'s label (attached by nerdctl, cache elsewhere)', () => {
    const pid = ctrd.runContainer(NS, 'h4x-nerdctl-made', {labels: {'nerdctl/networks': '["net2"]', 'nerdctl/name': 'made'}})
    expect(fails(['network', 'rm', 'net2'])).toContain('network "net2" is in use by container')
    // not attached at all yet: listed, no details
    expect(inspect('net2')).toEqual({'h4x-nerdctl-made': {Name: 'made', MacAddress: '', IPv4Address: '', IPv6Address: '', DNSNames: ['made', 'h4x-nerdctl-made', 'h4x-nerdctl-']}})
    // attached the way nerdctl does it, with its cache somewhere else: details come from the netns (eth0 = 1st in label)
    const otherCache = join(host.dir, 'other-cache')
    const netns = `/proc/${pid}/ns/net`
    const add = cli(['cni', 'add', 'net2', netns, '--container-id', 'h4x-h4x-nerdctl-made'], {cacheDir: otherCache})
    expect(add.stderr).toBe('')
    const addr = containerAddrs('h4x-nerdctl-made', 'eth0')[0]
    expect(inspect('net2')).toEqual({
      'h4x-nerdctl-made': {Name: 'made', MacAddress: containerMac('h4x-nerdctl-made', 'eth0'), IPv4Address: addr, IPv6Address: '', DNSNames: ['made', 'h4x-nerdctl-made', 'h4x-nerdctl-']},
    })
    expect(cli(['cni', 'del', 'net2', netns, '--container-id', 'h4x-h4x-nerdctl-made'], {cacheDir: otherCache}).code).toBe(0)
    expect(host.leases('net2')).toEqual([])
    ctrd.removeContainer(NS, 'h4x-nerdctl-made')
    expect(inspect('net2')).toEqual({})
  })

  it('refuses to connect the same container twice, changing nothing', () => {
    const before = {cache: cacheEntries(), leases: host.leases('net1'), label: labelNetworks('h4x-web-0123456789')}
    const line = fails(['network', 'connect', 'net1', 'web'])
    expect(line).toBe('ctrnet: container web : is already connected to network net1 (as eth0)')
    expect({cache: cacheEntries(), leases: host.leases('net1'), label: labelNetworks('h4x-web-0123456789')}).toEqual(before)
    const netns = liveNetns('h4x-web-0123456789')
    expect(ethLinks(netns)).toEqual(['eth0'])
    expect(addrsIn(netns, 'eth0')).toEqual([`${webIp}/24`])
  })

  it('attaches a second network as eth1', () => {
    ok(['network', 'connect', 'net2', 'web'])
    expect(containerAddrs('h4x-web-0123456789', 'eth0')).toEqual([`${webIp}/24`])
    const eth1 = containerAddrs('h4x-web-0123456789', 'eth1')
    expect(eth1).toHaveLength(1)
    expect(eth1[0]).toMatch(/^10\.44\.2\.\d+\/24$/)
    expect(labelNetworks('h4x-web-0123456789')).toBe('["net1","net2"]')
    expect(hostPing(ipOf(eth1[0]))).toBe(0)
    expect(inspect('net2')['h4x-web-0123456789']).toMatchObject({Name: 'web', IPv4Address: eth1[0], MacAddress: containerMac('h4x-web-0123456789', 'eth1')})
  })

  it('disconnects one network, leaving the other', () => {
    const eth1 = ipOf(containerAddrs('h4x-web-0123456789', 'eth1')[0])
    ok(['network', 'disconnect', 'net2', 'web'])
    const netns = liveNetns('h4x-web-0123456789')
    expect(ethLinks(netns)).toEqual(['eth0'])
    expect(addrsIn(netns, 'eth0')).toEqual([`${webIp}/24`])
    expect(host.leases('net2')).toEqual([])
    expect(cacheEntries().filter((e) => e.startsWith('net2-'))).toEqual([])
    expect(hostRules()).not.toContain(eth1)
    expect(labelNetworks('h4x-web-0123456789')).toBe('["net1"]')
    expect(hostPing(webIp)).toBe(0)
    expect(inspect('net2')).toEqual({})
  })

  it('disconnects fully: no veth, lease, iptables rule or cache entry is left', () => {
    const peerIp = ipOf(containerAddrs('h4x-peer-abcdef', 'eth0')[0])
    ok(['network', 'disconnect', 'net1', 'web'])
    ok(['network', 'disconnect', 'net1', 'peer'])
    expect(ethLinks(liveNetns('h4x-web-0123456789'))).toEqual([])
    expect(ethLinks(liveNetns('h4x-peer-abcdef'))).toEqual([])
    expect(host.leases('net1')).toEqual([])
    expect(cacheEntries()).toEqual([])
    const rules = hostRules()
    for (const needle of [webIp, peerIp, 'h4x-h4x-web-0123456789', 'h4x-h4x-peer-abcdef']) expect(rules).not.toContain(needle)
    expect(rules).not.toMatch(/-A CNI-DN-/)
    expect(hostLinks()).not.toMatch(/veth/)
    expect(ctrd.labels(NS, 'h4x-web-0123456789')).not.toHaveProperty('nerdctl/networks')
    expect(inspect('net1')).toEqual({})
    // and the network can go now
    ok(['network', 'rm', 'net2'])
    expect(existsSync(host.confPath('net2', NS))).toBe(false)
    host.createNetwork('net2', ['--subnet', '10.44.2.0/24'], NS)
  })

  it('disconnects a container whose task was killed', async () => {
    ctrd.runContainer(NS, 'h4x-doomed', {labels: {'nerdctl/name': 'doomed'}})
    ok(['network', 'connect', 'net1', 'doomed', '-p', '8081:80'])
    const ip = ipOf(containerAddrs('h4x-doomed', 'eth0')[0])
    expect(hostRules()).toContain('h4x-h4x-doomed')
    await ctrd.killTask(NS, 'h4x-doomed')
    // a stopped container is no user of the network
    expect(inspect('net1')).toEqual({})
    ok(['network', 'disconnect', 'net1', 'doomed'])
    expect(host.leases('net1')).toEqual([])
    expect(cacheEntries()).toEqual([])
    const rules = hostRules()
    expect(rules).not.toContain(ip)
    expect(rules).not.toContain('h4x-h4x-doomed')
    expect(hostLinks()).not.toMatch(/veth/)
    expect(ctrd.labels(NS, 'h4x-doomed')).not.toHaveProperty('nerdctl/networks')
  })

  it('disconnects a container that is gone altogether', () => {
    ctrd.runContainer(NS, 'h4x-gone')
    ok(['network', 'connect', 'net1', 'h4x-gone', '-p', '8082:80'])
    const ip = ipOf(containerAddrs('h4x-gone', 'eth0')[0])
    ctrd.removeContainer(NS, 'h4x-gone')
    ok(['network', 'disconnect', 'net1', 'h4x-gone'])
    expect(host.leases('net1')).toEqual([])
    expect(cacheEntries()).toEqual([])
    expect(hostRules()).not.toContain(ip)
    expect(hostRules()).not.toContain('h4x-h4x-gone')
  })

  it('reconnects a container after its task was restarted, releasing the stale attachment', async () => {
    ctrd.runContainer(NS, 'h4x-phoenix')
    ok(['network', 'connect', 'net1', 'h4x-phoenix'])
    const first = ipOf(containerAddrs('h4x-phoenix', 'eth0')[0])
    await ctrd.killTask(NS, 'h4x-phoenix')
    ctrd.restartTask(NS, 'h4x-phoenix')
    // the new task has a fresh netns: not "already connected"
    ok(['network', 'connect', 'net1', 'h4x-phoenix'])
    const addrs = containerAddrs('h4x-phoenix', 'eth0')
    expect(addrs).toHaveLength(1)
    // one lease, one cache entry: the old one was released
    expect(host.leases('net1')).toEqual([ipOf(addrs[0])])
    expect(cacheEntries()).toEqual(['net1-h4x-h4x-phoenix-eth0'])
    if (ipOf(addrs[0]) !== first) expect(hostRules()).not.toContain(`${first}/32`)
    expect(labelNetworks('h4x-phoenix')).toBe('["net1"]')
    ok(['network', 'disconnect', 'net1', 'h4x-phoenix'])
    expect(host.leases('net1')).toEqual([])
    ctrd.removeContainer(NS, 'h4x-phoenix')
  })

  it('serialises concurrent connects of one container: distinct ifnames, both in the label', async () => {
    ctrd.runContainer(NS, 'h4x-busy')
    const [a, b] = await Promise.all([
      host.cliAsync(['network', 'connect', 'net1', 'h4x-busy'], {address: ctrd.address, namespace: NS}),
      host.cliAsync(['network', 'connect', 'net2', 'h4x-busy'], {address: ctrd.address, namespace: NS}),
    ])
    expect([a.code, a.stderr, b.code, b.stderr]).toEqual([0, '', 0, ''])
    const eth0 = containerAddrs('h4x-busy', 'eth0')
    const eth1 = containerAddrs('h4x-busy', 'eth1')
    expect([eth0, eth1].flat().map((x) => x.replace(/\.\d+\/24$/, '')).sort()).toEqual(['10.44.1', '10.44.2'])
    expect(JSON.parse(labelNetworks('h4x-busy') ?? '[]').sort()).toEqual(['net1', 'net2'])
    const [c, d] = await Promise.all([
      host.cliAsync(['network', 'disconnect', 'net1', 'h4x-busy'], {address: ctrd.address, namespace: NS}),
      host.cliAsync(['network', 'disconnect', 'net2', 'h4x-busy'], {address: ctrd.address, namespace: NS}),
    ])
    expect([c.code, c.stderr, d.code, d.stderr]).toEqual([0, '', 0, ''])
    expect(ctrd.labels(NS, 'h4x-busy')).not.toHaveProperty('nerdctl/networks')
    expect([...host.leases('net1'), ...host.leases('net2')]).toEqual([])
    expect(cacheEntries()).toEqual([])
    ctrd.removeContainer(NS, 'h4x-busy')
  })

  it('dual stack: --ip6 on a network created with --ipv6', () => {
    host.createNetwork('net6', ['--ipv6', '--subnet', '10.44.6.0/24', '--subnet', 'fd00:44:6::/64'], NS)
    ok(['network', 'connect', '--ip6', 'fd00:44:6::77', 'net6', 'web'])
    const addrs = containerAddrs('h4x-web-0123456789', 'eth0')
    expect(addrs).toContain('fd00:44:6::77/64')
    const v4 = addrs.find((a) => !a.includes(':'))
    expect(v4).toMatch(/^10\.44\.6\.\d+\/24$/)
    expect(inspect('net6')['h4x-web-0123456789']).toEqual({
      Name: 'web',
      MacAddress: containerMac('h4x-web-0123456789', 'eth0'),
      IPv4Address: v4,
      IPv6Address: 'fd00:44:6::77/64',
      DNSNames: ['web', 'h4x-web-0123456789', 'h4x-web-0123'],
    })
    ok(['network', 'disconnect', 'net6', 'web'])
    expect(host.leases('net6')).toEqual([])
    expect(cacheEntries()).toEqual([])
  })

  it('connects to the default network bridge, creating nerdctl\'s file first', () => {
    const file = host.confPath('bridge')
    expect(existsSync(file)).toBe(false)
    ok(['network', 'connect', 'bridge', 'web'])
    const conf = JSON.parse(readFileSync(file, 'utf8'))
    expect(conf.name).toBe('bridge')
    expect(conf.nerdctlID).toBe('17f29b073143d8cd97b5bbe492bdeffec1c5fee55cc1fe2112c8b9335f8b6121')
    expect(conf.nerdctlLabels).toEqual({'nerdctl/default-network': 'true'})
    expect(conf.plugins[0]).toMatchObject({type: 'bridge', bridge: 'nerdctl0'})
    expect(conf.plugins[0].ipam.ranges).toEqual([[{gateway: '10.4.0.1', subnet: '10.4.0.0/24'}]])
    const addrs = containerAddrs('h4x-web-0123456789', 'eth0')
    expect(addrs).toHaveLength(1)
    expect(addrs[0]).toMatch(/^10\.4\.0\.\d+\/24$/)
    expect(host.exec('ip', ['-o', 'addr', 'show', 'dev', 'nerdctl0']).stdout).toContain('10.4.0.1/24')
    expect(hostPing(ipOf(addrs[0]))).toBe(0)
    expect(labelNetworks('h4x-web-0123456789')).toBe('["bridge"]')
    // the default dataDir (/var/lib/cni/networks) landed in our temp dir
    expect(host.leases('bridge')).toEqual([ipOf(addrs[0])])
    ok(['network', 'disconnect', 'bridge', 'web'])
    expect(host.leases('bridge')).toEqual([])
    expect(cacheEntries()).toEqual([])
  })
})

describe('errors a person understands', () => {
  it('no socket', () => {
    const sock = join(host.dir, 'nothing-here.sock')
    expect(fails(['network', 'connect', 'net1', 'web'], {address: sock})).toBe(
      `ctrnet: cannot reach containerd at ${sock} : is it running, and are you root?`,
    )
  })

  it('unknown container', () => {
    expect(fails(['network', 'connect', 'net1', 'no-such-thing'])).toBe(
      `ctrnet: no such container: no-such-thing : not found in containerd namespace "${NS}"`,
    )
    expect(fails(['network', 'disconnect', 'net1', 'no-such-thing'])).toMatch(/no such container: no-such-thing/)
  })

  it('unknown namespace', () => {
    expect(fails(['network', 'connect', 'net1', 'web'], {namespace: 'h4x-nope'})).toMatch(/^ctrnet: unknown containerd namespace "h4x-nope"/)
  })

  it('a container without a task, and one whose task stopped', async () => {
    ctrd.createContainer(NS, 'h4x-created', {labels: {'nerdctl/name': 'created'}})
    expect(fails(['network', 'connect', 'net1', 'created'])).toBe('ctrnet: container created is not running : it has no task (start it first)')
    ctrd.runContainer(NS, 'h4x-stopped')
    await ctrd.killTask(NS, 'h4x-stopped')
    expect(fails(['network', 'connect', 'net1', 'h4x-stopped'])).toBe('ctrnet: container h4x-stopped is not running : its task is stopped')
    expect(host.leases('net1')).toEqual([])
    expect(cacheEntries()).toEqual([])
    expect(ctrd.labels(NS, 'h4x-stopped')).not.toHaveProperty('nerdctl/networks')
  })

  it('an unknown network, and a failed ADD leaves nothing behind', () => {
    expect(fails(['network', 'connect', 'nonet', 'web'])).toMatch(/^ctrnet: no such network: nonet/)
    // --ip outside the subnet: host-local refuses it; the chain is undone
    const line = fails(['network', 'connect', '--ip', '10.99.0.5', 'net1', 'web'])
    expect(line).toContain('network connect net1 web')
    expect(host.leases('net1')).toEqual([])
    expect(cacheEntries()).toEqual([])
    expect(pendingEntries()).toEqual([])
    expect(ethLinks(liveNetns('h4x-web-0123456789'))).toEqual([])
    expect(ctrd.labels(NS, 'h4x-web-0123456789')).not.toHaveProperty('nerdctl/networks')
    expect(hostLinks()).not.toMatch(/veth/)
  })

  it('bad flags are refused before anything runs', () => {
    expect(fails(['network', 'connect', '--ip', '10.44.1.300', 'net1', 'web'])).toMatch(/--ip 10\.44\.1\.300 : not an IPv4 address/)
    expect(fails(['network', 'connect', '-p', '99999:80', 'net1', 'web'])).toMatch(/invalid --publish: must be a port number from 1 to 65535, not "99999"/)
    expect(fails(['network', 'connect', '--ip6', 'fd00::1', 'net1', 'web'])).toMatch(/--ip6 needs a network created with --ipv6/)
  })

  it('--ip picks the address', () => {
    ok(['network', 'connect', '--ip', '10.44.1.77', 'net1', 'web'])
    expect(containerAddrs('h4x-web-0123456789', 'eth0')).toEqual(['10.44.1.77/24'])
    ok(['network', 'disconnect', 'net1', 'web'])
    expect(host.leases('net1')).toEqual([])
  })
})

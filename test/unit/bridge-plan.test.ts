/**
 * The bridge ADD as a plan (src/plugins/bridge/plan.ts): config + IPAM result
 * + observed state -> the kernel operations, without root. Every bridge
 * config of the conformance suite, with the bridge absent and present, plus
 * the options the suite does not reach.
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {CASES} from '../fixtures/conformance-cases.js'
import {loadBridgeConf, type BridgeConf} from '../../src/plugins/bridge/config.js'
import {planAdd, type AddInput, type BridgeOp, type Observed} from '../../src/plugins/bridge/plan.js'
import {hostLocalAdd} from '../../src/plugins/host-local/index.js'
import {loadHostLocalConf} from '../../src/plugins/host-local/config.js'
import type {CniResult, PluginConf, PluginNetConf} from '../../src/plugins/types.js'
import type {IpAddrLink} from '../../src/kernel/ip/addr.js'
import {renderNft} from '../../src/kernel/netfilter/nft.js'
import {spoofCheckScript} from '../../src/kernel/netfilter/spoofcheck.js'

const tmp = mkdtempSync(join(tmpdir(), 'bridge-plan-'))
afterAll(() => rmSync(tmp, {recursive: true, force: true}))

const CID = 'cid0123456789'
const IF = 'eth0'
const NETNS = '/var/run/netns/ctr'
const VETH = 'veth0000aaaa'
const PORT = 'veth1111bbbb'
const BR_MAC = '0a:00:00:00:00:01'
const CTR_MAC = '0a:58:0a:00:00:02'

/** One op per line: ip batches as "<ns>: cmd; cmd", the others by their fields. */
function show(ops: BridgeOp[]): string[] {
  return ops.map((o) => {
    switch (o.op) {
      case 'ip': {
        const pre = o.ns === 'host' ? 'host ip' : `ctr ip${o.sysctls ? ` [${o.sysctls.map(([k, v]) => `${k}=${v}`).join(' ')}]` : ''}`
        return `${pre}: ${o.cmds.map((c) => c.join(' ')).join('; ')}`
      }
      case 'sysctl':
        return `sysctl ${o.mode} ${o.key}=${o.value}`
      case 'bridge-vlan':
        return `bridge vlan add dev ${o.dev} vid ${o.vid} pvid untagged master`
      case 'ipmasq':
        return `ipmasq ${o.network} ${o.containerId} ${o.ips.map((i) => i.address).join(',')}`
      case 'spoofcheck':
        return `spoofcheck ${o.hostVeth} ${o.mac} ${o.containerId}-${o.ifName}`
      case 'settle':
        return `settle ${o.ifName}`
      case 'wait-port-up':
        return `wait port up ${o.dev}`
    }
  })
}

/** What `ip -j addr show` prints of a bridge with these addresses. */
function shown(name: string, cidrs: string[], mac = BR_MAC): IpAddrLink {
  return {
    ifname: name,
    ifindex: 3,
    address: mac,
    addr_info: cidrs.map((c) => {
      const [local, prefix] = c.split('/')
      return {family: local.includes(':') ? 'inet6' : 'inet', local, prefixlen: Number(prefix), scope: 'global'}
    }),
  } as IpAddrLink
}

function stdinOf(name: string, cniVersion: string, p: PluginConf, capArgs?: Record<string, unknown>): PluginNetConf {
  const stdin: PluginNetConf = {...p, name, cniVersion}
  const rc: Record<string, unknown> = {}
  for (const [cap, on] of Object.entries(p.capabilities ?? {})) if (on && capArgs && cap in capArgs) rc[cap] = capArgs[cap]
  if (Object.keys(rc).length) stdin.runtimeConfig = rc
  return stdin
}

/** The IPAM result the embedded IPAM plugin gives a first container (host-local in a fresh store, or static). */
async function ipamFor(stdin: PluginNetConf, args: Array<[string, string]>): Promise<CniResult> {
  if (stdin.ipam?.type === 'static') {
    const ipam = stdin.ipam as {addresses: Array<{address: string; gateway?: string}>; routes?: Array<{dst: string; gw?: string}>}
    return {cniVersion: '1.0.0', ips: ipam.addresses.map((a) => ({...a})), routes: ipam.routes ?? []}
  }
  return hostLocalAdd(loadHostLocalConf(stdin, args), CID, IF)
}

function input(conf: BridgeConf, ipam: CniResult | undefined, observed: Observed): AddInput {
  return {conf, containerId: CID, ifName: IF, netns: NETNS, hostVeth: VETH, vlanPort: PORT, ipam, observed}
}

/** The gateway CIDRs the bridge carries after an ADD (calcGateways: given gateway or network + 1). */
function gatewaysOf(ipam: CniResult, conf: BridgeConf, result: string[]): string[] {
  if (!conf.isGW && !conf.isDefaultGW) return []
  return (ipam.ips ?? []).map((ip) => {
    const prefix = ip.address.split('/')[1]
    const gw = result.find((l) => l.startsWith('ctr ip'))!.match(new RegExp(`route prepend \\S+ via (\\S+)`))?.[1]
    return `${ip.gateway ?? gw}/${prefix}`
  })
}

const bridgeCases = CASES.flatMap((c) => {
  const list = c.conf({dataDir: join(tmp, 'unused')})
  return list.plugins.filter((p) => p.type === 'bridge').map((p) => ({c, list, p}))
})

describe('bridge plan: every bridge config of the conformance suite', () => {
  it('covers them all', () => {
    expect(bridgeCases.length).toBeGreaterThanOrEqual(15)
  })

  describe.each(bridgeCases)('$c.name', ({c, list, p}) => {
    for (const state of ['absent', 'present'] as const) {
      it(`bridge ${state}`, async () => {
        const dataDir = mkdtempSync(join(tmp, 'ipam-'))
        const pc: PluginConf = p.ipam?.type === 'host-local' ? {...p, ipam: {...p.ipam, dataDir}} : p
        const stdin = stdinOf(list.name, list.cniVersion, pc, c.capArgs)
        const args = c.cniArgs ?? []
        const conf = loadBridgeConf(stdin, args)
        const ipam = await ipamFor(stdin, args)
        const isGW = conf.isGW || conf.isDefaultGW
        // present: the bridge already carries its gateway addresses (a second container)
        const firstGws = (ipam.ips ?? []).map((i) => i.gateway).filter(Boolean)
        const observed: Observed = {
          bridge: state === 'absent' ? {exists: false, shown: isGW ? shown(conf.brName, []) : undefined} : {exists: true, shown: isGW ? shown(conf.brName, []) : undefined},
          containerMac: CTR_MAC,
        }
        let ops = show(planAdd(input(conf, ipam, observed)))
        const gws = gatewaysOf(ipam, conf, ops)
        if (state === 'present' && isGW) {
          observed.bridge = {exists: true, shown: shown(conf.brName, gws)}
          ops = show(planAdd(input(conf, ipam, observed)))
        }
        expect(ops).toMatchSnapshot()

        // the same facts, stated from the config
        const hostBatch = ops[0]
        expect(hostBatch.startsWith('host ip: ')).toBe(true)
        const mtu = conf.mtu ? ` mtu ${conf.mtu}` : ''
        expect(hostBatch.includes(`link add name ${conf.brName}${mtu} type bridge`)).toBe(state === 'absent')
        expect(hostBatch).toContain(`link add name ${VETH} txqueuelen 0${mtu} type veth peer name ${IF} txqueuelen 0${mtu} netns ${NETNS}`)
        expect(hostBatch).toContain(`link set dev ${VETH} master ${conf.brName}`)
        expect(hostBatch.includes(`link set dev ${VETH} type bridge_slave hairpin on`)).toBe(conf.hairpinMode)
        expect(hostBatch.includes(`link set dev ${conf.brName} promisc on`)).toBe(conf.promiscMode)
        expect(ops).toContain(`sysctl try net/ipv6/conf/${conf.brName}/accept_ra=0`)
        expect(ops).toContain(`sysctl try net/ipv6/conf/${VETH}/accept_ra=0`)
        const ctr = ops.find((o) => o.startsWith('ctr ip ['))!
        for (const ip of ipam.ips ?? []) expect(ctr).toContain(`addr add ${ip.address} dev ${IF}`)
        expect(ctr.endsWith(`; addr show dev ${IF}`)).toBe(true)
        for (const r of ipam.routes ?? []) expect(ctr).toMatch(new RegExp(`route prepend ${r.dst.replace(/[./]/g, '\\$&')} via \\S+ dev ${IF}`))
        // the gateway addresses go on the bridge only while it lacks them, with the MAC pinned once
        const gwBatch = ops.find((o) => o.startsWith('host ip: addr add'))
        if (isGW && state === 'absent') {
          expect(gws.length).toBe((ipam.ips ?? []).length)
          for (const g of gws) expect(gwBatch).toContain(`addr add ${g} dev ${conf.brName}`)
          expect(gwBatch!.match(/link set dev \S+ address/g)).toEqual(['link set dev ' + conf.brName + ' address'])
          if (firstGws.length === 0) expect(gws.every((g) => g.split('/')[0].endsWith('.1') || g.split('/')[0].endsWith('::1'))).toBe(true)
        } else {
          expect(gwBatch).toBeUndefined()
        }
        expect(ops.some((o) => o.startsWith('ipmasq '))).toBe(conf.ipMasq)
        expect(ops.includes('sysctl ensure net/ipv4/ip_forward=1')).toBe(isGW && (ipam.ips ?? []).some((i) => !i.address.includes(':')))
        expect(ops.includes('sysctl ensure net/ipv6/conf/all/forwarding=1')).toBe(isGW && (ipam.ips ?? []).some((i) => i.address.includes(':')))
        expect(ops).toContain(`wait port up ${VETH}`)
      })
    }
  })
})

describe('bridge plan: options', () => {
  const V4: CniResult = {cniVersion: '1.0.0', ips: [{address: '10.9.0.2/24', gateway: '10.9.0.1'}], routes: [{dst: '0.0.0.0/0'}]}
  const conf = (extra: Record<string, unknown>, ipam: Record<string, unknown> | null = {type: 'host-local'}): BridgeConf =>
    loadBridgeConf({type: 'bridge', name: 'net', cniVersion: '1.0.0', bridge: 'br9', ...(ipam ? {ipam: ipam as PluginConf['ipam']} : {}), ...extra}, [])
  const observedWith = (gwAddrs: string[] = []): Observed => ({bridge: {exists: false, shown: shown('br9', gwAddrs)}, containerMac: CTR_MAC})
  const ops = (c: BridgeConf, ipam: CniResult | undefined, o: Observed) => show(planAdd(input(c, ipam, o)))

  it('isGateway off, ipMasq off, hairpin off: no gateway address, no forwarding, no masquerade', () => {
    expect(ops(conf({mtu: 1400}), V4, {bridge: {exists: false}, containerMac: CTR_MAC})).toMatchInlineSnapshot(`
      [
        "host ip: link add name br9 mtu 1400 type bridge; link set dev br9 up; link add name veth0000aaaa txqueuelen 0 mtu 1400 type veth peer name eth0 txqueuelen 0 mtu 1400 netns /var/run/netns/ctr; link set dev veth0000aaaa up; link set dev veth0000aaaa master br9",
        "sysctl try net/ipv6/conf/br9/accept_ra=0",
        "sysctl try net/ipv6/conf/veth0000aaaa/accept_ra=0",
        "ctr ip [net/ipv6/conf/eth0/accept_dad=0 net/ipv4/conf/eth0/arp_notify=1]: addr add 10.9.0.2/24 dev eth0 broadcast +; link set dev eth0 up; route prepend 0.0.0.0/0 via 10.9.0.1 dev eth0; addr show dev eth0",
        "wait port up veth0000aaaa",
      ]
    `)
  })

  it('isDefaultGateway: gateway computed (network + 1) and a default route added', () => {
    expect(ops(conf({isDefaultGateway: true, ipMasq: true}), {cniVersion: '1.0.0', ips: [{address: '10.9.0.7/24'}]}, observedWith())).toMatchInlineSnapshot(`
      [
        "host ip: link add name br9 type bridge; link set dev br9 up; addr show dev br9; link add name veth0000aaaa txqueuelen 0 type veth peer name eth0 txqueuelen 0 netns /var/run/netns/ctr; link set dev veth0000aaaa up; link set dev veth0000aaaa master br9",
        "sysctl try net/ipv6/conf/br9/accept_ra=0",
        "sysctl try net/ipv6/conf/veth0000aaaa/accept_ra=0",
        "ctr ip [net/ipv6/conf/eth0/accept_dad=0 net/ipv4/conf/eth0/arp_notify=1]: addr add 10.9.0.7/24 dev eth0 broadcast +; link set dev eth0 up; route prepend 0.0.0.0/0 via 10.9.0.1 dev eth0; addr show dev eth0",
        "host ip: addr add 10.9.0.1/24 dev br9 broadcast +; link set dev br9 address 0a:00:00:00:00:01",
        "ipmasq net cid0123456789 10.9.0.7/24",
        "wait port up veth0000aaaa",
        "sysctl ensure net/ipv4/ip_forward=1",
      ]
    `)
  })

  it('bridge with another address in the subnet: refused, or replaced with forceAddress', () => {
    const other = observedWith(['10.9.0.254/24'])
    expect(() => ops(conf({isGateway: true}), V4, other)).toThrow('"br9" already has an IP address different from 10.9.0.1/24')
    expect(ops(conf({isGateway: true, forceAddress: true}), V4, other).filter((o) => o.startsWith('host ip: addr'))).toMatchInlineSnapshot(`
      [
        "host ip: addr del 10.9.0.254/24 dev br9; addr add 10.9.0.1/24 dev br9 broadcast +; link set dev br9 address 0a:00:00:00:00:01",
      ]
    `)
  })

  it('bridge that carries an address of another family or the gateway already', () => {
    expect(ops(conf({isGateway: true}), V4, observedWith(['fd00::1/64'])).filter((o) => o.startsWith('host ip: addr'))).toMatchInlineSnapshot(`
      [
        "host ip: addr add 10.9.0.1/24 dev br9 broadcast +; link set dev br9 address 0a:00:00:00:00:01",
      ]
    `)
    expect(ops(conf({isGateway: true}), V4, observedWith(['10.9.0.1/24'])).filter((o) => o.startsWith('host ip: addr'))).toEqual([])
  })

  it('vlan: a vlan filtering bridge, the port tagged, the gateway on <bridge>.<vlan>', () => {
    const o: Observed = {bridge: {exists: false}, vlanIf: {exists: false, addrs: shown('br9.42', [], '0a:00:00:00:00:42'), mac: '0a:00:00:00:00:42', bridgeMtu: 1500}, containerMac: CTR_MAC}
    expect(ops(conf({isGateway: true, vlan: 42}), V4, o)).toMatchInlineSnapshot(`
      [
        "host ip: link add name br9 type bridge vlan_filtering 1; link set dev br9 up; link add name veth0000aaaa txqueuelen 0 type veth peer name eth0 txqueuelen 0 netns /var/run/netns/ctr; link set dev veth0000aaaa up; link set dev veth0000aaaa master br9",
        "sysctl try net/ipv6/conf/br9/accept_ra=0",
        "sysctl try net/ipv6/conf/veth0000aaaa/accept_ra=0",
        "bridge vlan add dev veth0000aaaa vid 42 pvid untagged master",
        "ctr ip [net/ipv6/conf/eth0/accept_dad=0 net/ipv4/conf/eth0/arp_notify=1]: addr add 10.9.0.2/24 dev eth0 broadcast +; link set dev eth0 up; route prepend 0.0.0.0/0 via 10.9.0.1 dev eth0; addr show dev eth0",
        "host ip: link add name veth1111bbbb txqueuelen 0 mtu 1500 type veth peer name br9.42 txqueuelen 0 mtu 1500; link set dev veth1111bbbb up; link set dev veth1111bbbb master br9; link set dev br9.42 up",
        "sysctl try net/ipv6/conf/veth1111bbbb/accept_ra=0",
        "bridge vlan add dev veth1111bbbb vid 42 pvid untagged master",
        "host ip: addr show dev br9.42",
        "host ip: addr add 10.9.0.1/24 dev br9.42 broadcast +; link set dev br9.42 address 0a:00:00:00:00:42",
        "wait port up veth0000aaaa",
        "sysctl ensure net/ipv4/ip_forward=1",
      ]
    `)
    // the vlan interface exists already: only its addresses are read
    expect(ops(conf({isGateway: true, vlan: 42}), V4, {...o, vlanIf: {...o.vlanIf!, exists: true}}).filter((x) => x.startsWith('host ip'))).toMatchInlineSnapshot(`
      [
        "host ip: link add name br9 type bridge vlan_filtering 1; link set dev br9 up; link add name veth0000aaaa txqueuelen 0 type veth peer name eth0 txqueuelen 0 netns /var/run/netns/ctr; link set dev veth0000aaaa up; link set dev veth0000aaaa master br9",
        "host ip: addr show dev br9.42",
        "host ip: addr add 10.9.0.1/24 dev br9.42 broadcast +; link set dev br9.42 address 0a:00:00:00:00:42",
      ]
    `)
  })

  it('macspoofchk, promiscMode, layer 2 only', () => {
    expect(ops(conf({macspoofchk: true, promiscMode: true}, null), undefined, {bridge: {exists: true}, containerMac: CTR_MAC})).toMatchInlineSnapshot(`
      [
        "host ip: link set dev br9 promisc on; link set dev br9 up; link add name veth0000aaaa txqueuelen 0 type veth peer name eth0 txqueuelen 0 netns /var/run/netns/ctr; link set dev veth0000aaaa up; link set dev veth0000aaaa master br9",
        "sysctl try net/ipv6/conf/br9/accept_ra=0",
        "sysctl try net/ipv6/conf/veth0000aaaa/accept_ra=0",
        "ctr ip: link set dev eth0 up; addr show dev eth0",
        "spoofcheck veth0000aaaa 0a:58:0a:00:00:02 cid0123456789-eth0",
      ]
    `)
    expect(ops(conf({macspoofchk: true, hairpinMode: true, isGateway: true}), V4, observedWith(['10.9.0.1/24']))).toMatchInlineSnapshot(`
      [
        "host ip: link add name br9 type bridge; link set dev br9 up; addr show dev br9; link add name veth0000aaaa txqueuelen 0 type veth peer name eth0 txqueuelen 0 netns /var/run/netns/ctr; link set dev veth0000aaaa up; link set dev veth0000aaaa master br9; link set dev veth0000aaaa type bridge_slave hairpin on",
        "sysctl try net/ipv6/conf/br9/accept_ra=0",
        "sysctl try net/ipv6/conf/veth0000aaaa/accept_ra=0",
        "ctr ip [net/ipv6/conf/eth0/accept_dad=0 net/ipv4/conf/eth0/arp_notify=1]: addr add 10.9.0.2/24 dev eth0 broadcast +; link set dev eth0 up; route prepend 0.0.0.0/0 via 10.9.0.1 dev eth0; addr show dev eth0",
        "spoofcheck veth0000aaaa 0a:58:0a:00:00:02 cid0123456789-eth0",
        "wait port up veth0000aaaa",
        "sysctl ensure net/ipv4/ip_forward=1",
      ]
    `)
  })

  it('enabledad with an IPv6 gateway: routes after the addresses settled', () => {
    const dual: CniResult = {cniVersion: '1.0.0', ips: [{address: 'fd09::2/64', gateway: 'fd09::1'}], routes: [{dst: '::/0'}]}
    expect(ops(conf({enabledad: true, isGateway: true}), dual, observedWith(['fd09::1/64']))).toMatchInlineSnapshot(`
      [
        "host ip: link add name br9 type bridge; link set dev br9 up; addr show dev br9; link add name veth0000aaaa txqueuelen 0 type veth peer name eth0 txqueuelen 0 netns /var/run/netns/ctr; link set dev veth0000aaaa up; link set dev veth0000aaaa master br9",
        "sysctl try net/ipv6/conf/br9/accept_ra=0",
        "sysctl try net/ipv6/conf/veth0000aaaa/accept_ra=0",
        "ctr ip [net/ipv6/conf/eth0/enhanced_dad=1 net/ipv6/conf/eth0/accept_dad=1 net/ipv4/conf/eth0/arp_notify=1 net/ipv6/conf/lo/disable_ipv6=0 net/ipv6/conf/eth0/disable_ipv6=0]: addr add fd09::2/64 dev eth0; link set dev eth0 up; addr show dev eth0",
        "settle eth0",
        "ctr ip: route prepend ::/0 via fd09::1 dev eth0",
        "wait port up veth0000aaaa",
        "sysctl ensure net/ipv6/conf/all/forwarding=1",
      ]
    `)
  })

  it('a MAC from CNI_ARGS / runtimeConfig goes on the container end', () => {
    const c = loadBridgeConf({type: 'bridge', name: 'net', cniVersion: '1.0.0', bridge: 'br9', runtimeConfig: {mac: 'C2:00:00:00:00:09'}}, [['MAC', '02:00:00:00:00:01']])
    expect(ops(c, undefined, {bridge: {exists: true}, containerMac: CTR_MAC})[0]).toContain('peer name eth0 txqueuelen 0 address c2:00:00:00:00:09 netns')
  })

  it('an IPAM result without addresses is refused', () => {
    expect(() => ops(conf({}), {cniVersion: '1.0.0', ips: []}, observedWith())).toThrow('IPAM plugin returned missing IP config')
  })
})

describe('spoof check (kernel/netfilter/spoofcheck.ts)', () => {
  it('one nft transaction: only the container MAC leaves the host veth', () => {
    expect(renderNft(spoofCheckScript(VETH, '0A:58:0A:00:00:02', CID, IF))).toMatchInlineSnapshot(`
      "add table bridge nat
      add chain bridge nat PREROUTING { type filter hook prerouting priority -300; policy accept; }
      add chain bridge nat cni-br-iface-cid0123456789-eth0
      add chain bridge nat cni-br-iface-cid0123456789-eth0-mac
      flush chain bridge nat cni-br-iface-cid0123456789-eth0
      flush chain bridge nat cni-br-iface-cid0123456789-eth0-mac
      add rule bridge nat PREROUTING iifname "veth0000aaaa" jump cni-br-iface-cid0123456789-eth0 comment "macspoofchk-cid0123456789-eth0"
      add rule bridge nat cni-br-iface-cid0123456789-eth0 jump cni-br-iface-cid0123456789-eth0-mac comment "macspoofchk-cid0123456789-eth0"
      add rule bridge nat cni-br-iface-cid0123456789-eth0-mac ether saddr 0a:58:0a:00:00:02 return comment "macspoofchk-cid0123456789-eth0"
      add rule bridge nat cni-br-iface-cid0123456789-eth0-mac drop comment "macspoofchk-cid0123456789-eth0"
      "
    `)
  })
})

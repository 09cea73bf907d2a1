import type {CniResult, CniRoute} from '../types.js'
import type {IpCmd} from '../../kernel/ip/batch.js'
import {assertIfName, cmdBridgeAdd, cmdLinkSet, cmdLinkUp, cmdVethAdd} from '../../kernel/ip/link.js'
import {bigToIp, ipToBig, cidrContains, cmdAddrAdd, cmdAddrDel, cmdAddrShow, networkOf, parseCidr, parseIp, type IpAddrLink} from '../../kernel/ip/addr.js'
import {cmdRouteAdd} from '../../kernel/ip/route.js'
import {fail, type BridgeConf} from './config.js'

/**
 * The bridge ADD as data: pure functions from the config, the IPAM result and
 * what was observed of the kernel (plain values) to the kernel operations to
 * run. No I/O here; apply.ts runs the operations, stage by stage, because a
 * later stage depends on what an earlier one printed (the bridge's addresses,
 * the container's MAC).
 *
 * One `ip -batch` in the host namespace for the bridge and the veth pair (the
 * container end is created directly inside the target namespace), one
 * `nsenter -> sh -> ip -batch` in the container for its sysctls, addresses,
 * link and routes, and (only while the bridge lacks its gateway address) one
 * more host batch for the gateway address.
 */

/** One kernel operation of a bridge ADD (each `ip` op is one process). */
export type BridgeOp =
  | {op: 'ip'; ns: 'host'; cmds: IpCmd[]}
  | {op: 'ip'; ns: 'container'; netns: string; cmds: IpCmd[]; sysctls?: Array<[string, string]>}
  /** A host sysctl: 'try' ignores a failed write, 'ensure' writes unless already set. */
  | {op: 'sysctl'; key: string; value: string; mode: 'try' | 'ensure'}
  /** `bridge vlan add dev <dev> vid <vid> pvid untagged master` */
  | {op: 'bridge-vlan'; dev: string; vid: number}
  | {op: 'ipmasq'; network: string; containerId: string; ifName?: string; ips: {address: string}[]}
  | {op: 'spoofcheck'; hostVeth: string; mac: string; containerId: string; ifName: string}
  /** Polls the container's addresses until none is tentative (DAD). */
  | {op: 'settle'; netns: string; ifName: string}
  /** Polls the host veth until its operstate is up. */
  | {op: 'wait-port-up'; dev: string}

export interface GwInfo {
  gws: string[] // CIDRs gateway/prefix
  v6: boolean
  defaultRouteFound: boolean
}

/** The config an ADD runs with: isDefaultGateway implies isGateway. */
export function addConf(n: BridgeConf): BridgeConf {
  return n.isDefaultGW ? {...n, isGW: true} : n
}

// ---- stage 1: the host batch (bridge + veth) ------------------------------

export interface HostStep {
  cmds: IpCmd[]
  /** The bridge does not exist yet: the first command creates it. */
  newBridge: boolean
  /** 1-based line of the veth creation in cmds. */
  vethLine: number
}

export function planHost(n: BridgeConf, bridgeExists: boolean, hostVeth: string, ifName: string, netns: string): HostStep {
  const isL3 = n.ipamType !== ''
  const cmds: IpCmd[] = []
  const newBridge = !bridgeExists
  if (newBridge) cmds.push(cmdBridgeAdd(n.brName, {mtu: n.mtu || undefined, vlanFiltering: n.vlan !== 0}))
  if (n.promiscMode) cmds.push(cmdLinkSet(n.brName, 'promisc', 'on'))
  cmds.push(cmdLinkUp(n.brName))
  // the bridge's addresses, and its MAC before our port joins (the reference
  // pins the bridge to that MAC). NB: never put `link show` before other
  // commands in a batch: it leaves ip's global filter in link mode.
  if (isL3 && n.isGW && n.vlan === 0) cmds.push(cmdAddrShow(n.brName))
  // the reference creates both ends with txqueuelen 0 (netlink LinkAttrs{} literal)
  cmds.push(cmdVethAdd(hostVeth, ifName, netns, {mtu: n.mtu || undefined, peerMac: n.mac, txqlen: 0}))
  const vethLine = cmds.length
  cmds.push(cmdLinkUp(hostVeth))
  cmds.push(cmdLinkSet(hostVeth, 'master', n.brName))
  if (n.hairpinMode) cmds.push(cmdLinkSet(hostVeth, 'type', 'bridge_slave', 'hairpin', 'on'))
  return {cmds, newBridge, vethLine}
}

/** After the host batch: no router advertisements on the bridge and the port; the port's vlan tag. */
export function planPort(n: BridgeConf, hostVeth: string): BridgeOp[] {
  const ops: BridgeOp[] = [
    {op: 'sysctl', key: `net/ipv6/conf/${n.brName}/accept_ra`, value: '0', mode: 'try'},
    {op: 'sysctl', key: `net/ipv6/conf/${hostVeth}/accept_ra`, value: '0', mode: 'try'},
  ]
  if (n.vlan !== 0) ops.push({op: 'bridge-vlan', dev: hostVeth, vid: n.vlan})
  return ops
}

// ---- stage 2: the container (layer 3) ------------------------------------

/** calcGateways of bridge.go: fills gateways, interface index and default routes. */
export function calcGateways(result: CniResult, n: BridgeConf): {v4: GwInfo; v6: GwInfo} {
  const v4: GwInfo = {gws: [], v6: false, defaultRouteFound: false}
  const v6: GwInfo = {gws: [], v6: true, defaultRouteFound: false}
  result.routes ??= []
  for (const ipc of result.ips ?? []) {
    const c = parseCidr(ipc.address)
    const gws = c.v6 ? v6 : v4
    const defaultNet = c.v6 ? '::/0' : '0.0.0.0/0'
    ipc.interface = 2
    if (ipc.gateway === undefined && n.isGW) {
      const net = networkOf(c)
      ipc.gateway = parseIp(bigNext(net.ip, c.v6)).ip
    }
    if (n.isDefaultGW && !gws.defaultRouteFound) {
      for (const r of result.routes) {
        if (r.gw !== undefined && normDst(r.dst) === defaultNet) {
          gws.defaultRouteFound = true
          break
        }
      }
      if (!gws.defaultRouteFound) {
        const route: CniRoute = {dst: defaultNet}
        if (ipc.gateway !== undefined) route.gw = ipc.gateway
        result.routes.push(route)
        gws.defaultRouteFound = true
      }
    }
    if (n.isGW) gws.gws.push(`${parseIp(ipc.gateway!).ip}/${c.prefix}`)
  }
  return {v4, v6}
}

function normDst(dst: string): string {
  try {
    const c = networkOf(parseCidr(dst))
    return `${c.ip}/${c.prefix}`
  } catch {
    return dst
  }
}

/** network + 1 (calcGatewayIP) */
function bigNext(ip: string, v6: boolean): string {
  return bigToIp(ipToBig(ip, v6) + 1n, v6)
}

/** Container-side commands of ConfigureIface (addresses, link up, routes). */
function configureIfaceCmds(ifName: string, result: CniResult, withRoutes: boolean): IpCmd[] {
  const cmds: IpCmd[] = []
  for (const ipc of result.ips ?? []) {
    if (ipc.interface === undefined) continue
    const c = parseCidr(ipc.address)
    const add = cmdAddrAdd(ifName, ipc.address)
    // netlink.AddrAdd computes the IPv4 broadcast for prefixes < 31
    if (!c.v6 && c.prefix < 31) add.push('broadcast', '+')
    cmds.push(add)
  }
  cmds.push(cmdLinkUp(ifName))
  if (withRoutes) cmds.push(...planRoutes(ifName, result))
  return cmds
}

/** The routes of the result on ifName; a route without gw goes via the first gateway of its family. */
export function planRoutes(ifName: string, result: CniResult): IpCmd[] {
  const {v4gw, v6gw} = gatewaysOf(result)
  return (result.routes ?? []).map((r) => {
    const v6 = parseCidr(r.dst).v6
    return cmdRouteAdd({dst: r.dst, gw: r.gw ?? (v6 ? v6gw : v4gw), dev: ifName})
  })
}

function gatewaysOf(result: CniResult): {v4gw?: string; v6gw?: string} {
  let v4gw: string | undefined
  let v6gw: string | undefined
  for (const ipc of result.ips ?? []) {
    if (ipc.interface === undefined || ipc.gateway === undefined) continue
    const v6 = parseIp(ipc.gateway).v6
    if (!v6 && v4gw === undefined) v4gw = ipc.gateway
    else if (v6 && v6gw === undefined) v6gw = ipc.gateway
  }
  return {v4gw, v6gw}
}

export interface ContainerStep {
  gws: {v4: GwInfo; v6: GwInfo}
  /** The container batch: its sysctls, then addresses, link up, routes (unless settle), and `addr show` (for the MAC). */
  batch: Extract<BridgeOp, {op: 'ip'; ns: 'container'}>
  /** With DAD on and an IPv6 gateway, routes wait until the addresses settled (planRoutes after 'settle'). */
  settle: boolean
  /** ip forwarding for the families that have a gateway on the bridge. */
  forwarding: BridgeOp[]
}

/** The result's addresses and routes: copies of the IPAM result's. */
export function copyIpam(result: CniResult, ipam: CniResult): void {
  result.ips = (ipam.ips ?? []).map((i) => ({...i}))
  result.routes = (ipam.routes ?? []).map((r) => ({...r}))
}

/**
 * The container side of a layer 3 ADD. Fills in result (its ips and routes,
 * copied from the IPAM result by copyIpam) as calcGateways does: gateways,
 * interface index, default routes.
 */
export function planContainer(n: BridgeConf, result: CniResult, ifName: string, netns: string): ContainerStep {
  if ((result.ips ?? []).length === 0) throw fail('IPAM plugin returned missing IP config')
  const gws = calcGateways(result, n)
  const hasV6 = (result.ips ?? []).some((i) => parseCidr(i.address).v6)
  const sysctls: Array<[string, string]> = []
  if (n.enableDad) {
    sysctls.push([`net/ipv6/conf/${ifName}/enhanced_dad`, '1'], [`net/ipv6/conf/${ifName}/accept_dad`, '1'])
  } else sysctls.push([`net/ipv6/conf/${ifName}/accept_dad`, '0'])
  sysctls.push([`net/ipv4/conf/${ifName}/arp_notify`, '1'])
  if (hasV6) sysctls.push(['net/ipv6/conf/lo/disable_ipv6', '0'], [`net/ipv6/conf/${ifName}/disable_ipv6`, '0'])
  // With DAD enabled the reference waits for tentative v6 addresses to settle before adding routes.
  const settle = n.enableDad && gatewaysOf(result).v6gw !== undefined
  const cmds = [...configureIfaceCmds(ifName, result, !settle), cmdAddrShow(ifName)]
  const forwarding: BridgeOp[] = []
  if (n.isGW) {
    if (gws.v4.gws.length) forwarding.push({op: 'sysctl', key: 'net/ipv4/ip_forward', value: '1', mode: 'ensure'})
    if (gws.v6.gws.length) forwarding.push({op: 'sysctl', key: 'net/ipv6/conf/all/forwarding', value: '1', mode: 'ensure'})
  }
  return {gws, batch: {op: 'ip', ns: 'container', netns, cmds, sysctls}, settle, forwarding}
}

/** Layer 2 only: the container link up, and `addr show` for its MAC. */
export function planL2Container(ifName: string, netns: string): Extract<BridgeOp, {op: 'ip'; ns: 'container'}> {
  return {op: 'ip', ns: 'container', netns, cmds: [cmdLinkUp(ifName), cmdAddrShow(ifName)]}
}

// ---- stage 3: the gateway addresses on the bridge --------------------------

/** ensureAddr: commands that put gw (CIDR) on dev given its current addresses. */
function ensureAddrCmds(dev: string, current: IpAddrLink | undefined, gw: string, forceAddress: boolean, macToPin: string | undefined): IpCmd[] {
  const want = parseCidr(gw)
  const cmds: IpCmd[] = []
  for (const a of current?.addr_info ?? []) {
    const isV6 = a.family === 'inet6'
    if (isV6 !== want.v6) continue
    const have = `${parseIp(a.local).ip}/${a.prefixlen}`
    if (have === `${want.ip}/${want.prefix}`) return []
    const haveNet = networkOf(parseCidr(have))
    if (!want.v6 || cidrContains(haveNet, want.ip) || cidrContains(networkOf(want), parseIp(a.local).ip)) {
      if (forceAddress) cmds.push(cmdAddrDel(dev, have))
      else throw fail(`"${dev}" already has an IP address different from ${want.ip}/${want.prefix}`)
    }
  }
  const add = cmdAddrAdd(dev, gw)
  if (!want.v6 && want.prefix < 31) add.push('broadcast', '+')
  cmds.push(add)
  // Set the bridge's MAC to itself so it stops following its ports.
  if (macToPin) cmds.push(cmdLinkSet(dev, 'address', macToPin))
  return cmds
}

/**
 * The commands that put the gateway addresses `all` on dev (the bridge or its
 * vlan interface), given its current addresses; the MAC is pinned once, with
 * the first address added. Empty when every address is there already.
 */
export function planGatewayAddrs(dev: string, current: IpAddrLink | undefined, all: string[], forceAddress: boolean, pin: string | undefined): IpCmd[] {
  const cmds: IpCmd[] = []
  let pinned = false
  for (const gw of all) {
    const c = ensureAddrCmds(dev, current, gw, forceAddress, pinned ? undefined : pin)
    if (c.length) pinned = true
    cmds.push(...c)
  }
  return cmds
}

/** The name of the vlan interface "<bridge>.<vlan>" that carries the gateway addresses of a vlan network. */
export function vlanIfName(n: BridgeConf): string {
  return assertIfName(`${n.brName}.${n.vlan}`, 'vlan interface name')
}

/** ensureVlanInterface: a veth pair "<br>.<vlan>" (host side) <-> port on the bridge, then the port's vlan tag. */
export function planVlanIf(n: BridgeConf, name: string, port: string, bridgeMtu: number): BridgeOp[] {
  return [
    {
      op: 'ip',
      ns: 'host',
      cmds: [cmdVethAdd(port, name, undefined, {mtu: bridgeMtu || undefined, txqlen: 0}), cmdLinkUp(port), cmdLinkSet(port, 'master', n.brName), cmdLinkUp(name)],
    },
    {op: 'sysctl', key: `net/ipv6/conf/${port}/accept_ra`, value: '0', mode: 'try'},
    {op: 'bridge-vlan', dev: port, vid: n.vlan},
  ]
}

// ---- the whole ADD, for one observed state ---------------------------------

/** What an ADD observes of the kernel, as plain data. */
export interface Observed {
  /**
   * The bridge: whether it existed before the ADD, and what the host batch's
   * `addr show` printed of it (its addresses and MAC, also when just created).
   */
  bridge: {exists: boolean; shown?: IpAddrLink}
  /** The vlan interface <bridge>.<vlan> (vlan networks with a gateway only). */
  vlanIf?: {exists: boolean; addrs?: IpAddrLink; mac?: string; bridgeMtu?: number}
  /** The container interface's MAC, as the container batch printed it. */
  containerMac: string
}

export interface AddInput {
  conf: BridgeConf
  containerId: string
  ifName: string
  netns: string
  /** The random host veth name (and the vlan port name) the apply step drew. */
  hostVeth: string
  vlanPort?: string
  /** The IPAM result (layer 3 networks). */
  ipam?: CniResult
  observed: Observed
}

/**
 * Every kernel operation of an ADD that meets no concurrent change, in the
 * order apply.ts starts them (IPAM runs alongside the host batch; the
 * container batch, the gateway addresses and the masquerade rules run
 * alongside each other). The same stage functions apply.ts calls.
 */
export function planAdd(input: AddInput): BridgeOp[] {
  const n = addConf(input.conf)
  const {ifName, netns, hostVeth, observed} = input
  const ops: BridgeOp[] = []
  const host = planHost(n, observed.bridge.exists, hostVeth, ifName, netns)
  ops.push({op: 'ip', ns: 'host', cmds: host.cmds}, ...planPort(n, hostVeth))
  if (n.ipamType === '') {
    ops.push(planL2Container(ifName, netns))
    if (n.macSpoofChk) ops.push({op: 'spoofcheck', hostVeth, mac: observed.containerMac, containerId: input.containerId, ifName})
    return ops
  }
  const result: CniResult = {cniVersion: '1.0.0'}
  copyIpam(result, input.ipam ?? {cniVersion: '1.0.0'})
  const c = planContainer(n, result, ifName, netns)
  ops.push(c.batch)
  if (n.isGW) {
    const all = [...c.gws.v4.gws, ...c.gws.v6.gws]
    if (all.length) {
      let dev = n.brName
      let current = observed.bridge.shown
      let pin = observed.bridge.shown?.address
      if (n.vlan !== 0) {
        dev = vlanIfName(n)
        if (!observed.vlanIf?.exists) ops.push(...planVlanIf(n, dev, input.vlanPort ?? 'vethport', observed.vlanIf?.bridgeMtu ?? 0))
        ops.push({op: 'ip', ns: 'host', cmds: [cmdAddrShow(dev)]})
        current = observed.vlanIf?.addrs
        pin = observed.vlanIf?.mac
      }
      const cmds = planGatewayAddrs(dev, current, all, n.forceAddress, pin)
      if (cmds.length) ops.push({op: 'ip', ns: 'host', cmds})
    }
  }
  if (n.ipMasq) ops.push({op: 'ipmasq', network: n.name, containerId: input.containerId, ips: ipsOf(result)})
  if (n.macSpoofChk) ops.push({op: 'spoofcheck', hostVeth, mac: observed.containerMac, containerId: input.containerId, ifName})
  if (c.settle) {
    ops.push({op: 'settle', netns, ifName})
    const rc = planRoutes(ifName, result)
    if (rc.length) ops.push({op: 'ip', ns: 'container', netns, cmds: rc})
  }
  ops.push({op: 'wait-port-up', dev: hostVeth}, ...c.forwarding)
  return ops
}

/** The addresses of a result, as the masquerade rules take them. */
export function ipsOf(result: CniResult | undefined): {address: string}[] {
  return (result?.ips ?? []).map((i) => ({address: i.address}))
}

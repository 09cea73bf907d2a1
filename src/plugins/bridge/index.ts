import {
  CniError,
  CNI_ERR,
  type CniDns,
  type CniInterface,
  type CniIpConfig,
  type CniResult,
  type CniRoute,
  type EmbeddedPlugin,
  type PluginNetConf,
  type PluginRequest,
} from '../types.js'
import {batchError, ipBatch, parseJsonLines, type IpCmd} from '../../kernel/ip/batch.js'
import {isNetns, isNetnsGoneError, netnsExists} from '../../kernel/netns.js'
import {ensureSysctl, trySysctl} from '../../kernel/sysctl.js'
import {
  validIfName,
  assertIfName,
  cmdBridgeAdd,
  cmdLinkDel,
  cmdLinkSet,
  cmdLinkShow,
  cmdLinkUp,
  cmdVethAdd,
  isBridge,
  bridgePorts,
  linkAttr,
  linkExists,
  linkMac,
  normalizeMac,
  randomVethName,
  type IpLink,
} from '../../kernel/ip/link.js'
import {bigToIp, ipToBig, cidrContains, cmdAddrAdd, cmdAddrDel, cmdAddrShow, globalCidrs, networkOf, parseCidr, parseIp, type IpAddrLink} from '../../kernel/ip/addr.js'
import {cmdRouteAdd, cmdRouteShowAll, mainRoutes, routeDst, type IpRoute} from '../../kernel/ip/route.js'
import {run} from '../../sys/exec.js'
import {nftApply, nftBaseChain, nftJson, nftQuoted, nftToken, type NftCmd} from '../../kernel/netfilter/nft.js'
import {loadArgs} from '../cniargs.js'

/**
 * The bridge plugin of containernetworking/plugins v1.1.1, in-process.
 *
 * Kernel work is batched: one `ip -batch` in the host namespace for the
 * bridge and the veth pair (the container end is created directly inside the
 * target namespace), one `nsenter -> sh -> ip -batch` in the container for its
 * sysctls, addresses, link and routes, and (only while the bridge lacks its
 * gateway address) one more host batch for the gateway address.
 */

interface BridgeConf {
  name: string
  cniVersion: string
  brName: string
  isGW: boolean
  isDefaultGW: boolean
  forceAddress: boolean
  ipMasq: boolean
  mtu: number
  hairpinMode: boolean
  promiscMode: boolean
  vlan: number
  macSpoofChk: boolean
  enableDad: boolean
  mac?: string
  ipamType: string
  dns: CniDns
}

function invalid(msg: string): CniError {
  return new CniError(CNI_ERR.INTERNAL, msg) // the reference returns plain errors: skel makes them 999
}

function fail(msg: string): CniError {
  return new CniError(CNI_ERR.INTERNAL, msg)
}

function bool(v: unknown, key: string): boolean {
  if (v === undefined || v === null) return false
  if (typeof v !== 'boolean') throw invalid(`failed to load netconf: ${key} must be a boolean`)
  return v
}

function int(v: unknown, key: string): number {
  if (v === undefined || v === null) return 0
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalid(`failed to load netconf: ${key} must be an integer`)
  return v
}

export function loadBridgeConf(c: PluginNetConf, args: Array<[string, string]>): BridgeConf {
  const brName = c.bridge === undefined || c.bridge === '' ? 'cni0' : c.bridge
  const n: BridgeConf = {
    name: c.name,
    cniVersion: c.cniVersion,
    brName: assertIfName(brName, 'bridge name'),
    isGW: bool(c.isGateway, 'isGateway'),
    isDefaultGW: bool(c.isDefaultGateway, 'isDefaultGateway'),
    forceAddress: bool(c.forceAddress, 'forceAddress'),
    ipMasq: bool(c.ipMasq, 'ipMasq'),
    mtu: int(c.mtu, 'mtu'),
    hairpinMode: bool(c.hairpinMode, 'hairpinMode'),
    promiscMode: bool(c.promiscMode, 'promiscMode'),
    vlan: int(c.vlan, 'vlan'),
    macSpoofChk: bool(c.macspoofchk, 'macspoofchk'),
    enableDad: bool(c.enabledad, 'enabledad'),
    ipamType: typeof c.ipam?.type === 'string' ? c.ipam.type : '',
    dns: (c.dns as CniDns | undefined) ?? {},
  }
  if (n.vlan < 0 || n.vlan > 4094) throw invalid(`invalid VLAN ID ${n.vlan} (must be between 0 and 4094)`)
  if (n.mtu < 0 || n.mtu > 65535) throw invalid(`invalid MTU ${n.mtu}`)
  const env = loadArgs(args, ['MAC'])
  if (env.MAC) n.mac = env.MAC
  const argMac = (c.args as {cni?: {mac?: unknown}} | undefined)?.cni?.mac
  if (typeof argMac === 'string' && argMac) n.mac = argMac
  const rcMac = (c.runtimeConfig as {mac?: unknown} | undefined)?.mac
  if (typeof rcMac === 'string' && rcMac) n.mac = rcMac
  if (n.mac !== undefined) n.mac = normalizeMac(n.mac)
  return n
}

interface GwInfo {
  gws: string[] // CIDRs gateway/prefix
  v6: boolean
  defaultRouteFound: boolean
}

/** Config checks of the embedded IPAM types that need no state. */
async function precheckIpam(req: PluginRequest): Promise<void> {
  const type = req.config.ipam?.type
  if (type === 'host-local') {
    const {validateAdd} = await import('../host-local/index.js')
    validateAdd(req.config, req.args)
  } else if (type === 'static') {
    const {loadStaticConf} = await import('../static/index.js')
    loadStaticConf(req)
  }
}

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
  let v4gw: string | undefined
  let v6gw: string | undefined
  for (const ipc of result.ips ?? []) {
    if (ipc.interface === undefined) continue
    const c = parseCidr(ipc.address)
    const add = cmdAddrAdd(ifName, ipc.address)
    // netlink.AddrAdd computes the IPv4 broadcast for prefixes < 31
    if (!c.v6 && c.prefix < 31) add.push('broadcast', '+')
    cmds.push(add)
    if (ipc.gateway !== undefined) {
      const gv6 = parseIp(ipc.gateway).v6
      if (!gv6 && v4gw === undefined) v4gw = ipc.gateway
      else if (gv6 && v6gw === undefined) v6gw = ipc.gateway
    }
  }
  cmds.push(cmdLinkUp(ifName))
  if (withRoutes) cmds.push(...routeCmds(ifName, result, v4gw, v6gw))
  return cmds
}

function routeCmds(ifName: string, result: CniResult, v4gw?: string, v6gw?: string): IpCmd[] {
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

const TRACE = process.env.CTRNET_TRACE === '1'
const t0 = () => performance.now()
function trace(label: string, since: number): void {
  if (TRACE) process.stderr.write(`[bridge] ${label} ${(performance.now() - since).toFixed(1)}ms\n`)
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

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

function ipsOf(result: CniResult | undefined): {address: string}[] {
  return (result?.ips ?? []).map((i) => ({address: i.address}))
}

async function loadIpMasq(): Promise<typeof import('../ipmasq/index.js')> {
  return import('../ipmasq/index.js')
}

async function add(req: PluginRequest): Promise<CniResult> {
  const n = loadBridgeConf(req.config, req.args)
  const isL3 = n.ipamType !== ''
  if (n.isDefaultGW) n.isGW = true
  if (n.hairpinMode && n.promiscMode) throw fail('cannot set hairpin mode and promiscuous mode at the same time.')
  const ifName = assertIfName(req.ifName)
  const netns = req.netns
  if (!netns || !netnsExists(netns)) throw fail(`failed to open netns "${netns}": no such file or directory`)
  if (!isNetns(netns)) throw fail(`failed to open netns "${netns}": not a network namespace`)
  // The reference treats an ipam section without type as layer 2; we refuse it.
  if (req.config.ipam !== undefined && !isL3) throw fail('ipam: missing "type" (remove the ipam section for a layer-2 only network)')
  // Bad IPAM input must change nothing: check what can be checked before any kernel work.
  if (isL3) await precheckIpam(req)
  if (linkExists(n.brName) && !isBridge(n.brName)) throw fail(`failed to create bridge "${n.brName}": "${n.brName}" already exists but is not a bridge`)

  let hostVeth = randomVethName()
  // ---- step 1: host batch (bridge + veth) in parallel with IPAM ----
  const host: IpCmd[] = []
  const newBridge = !linkExists(n.brName)
  if (newBridge) host.push(cmdBridgeAdd(n.brName, {mtu: n.mtu || undefined, vlanFiltering: n.vlan !== 0}))
  if (n.promiscMode) host.push(cmdLinkSet(n.brName, 'promisc', 'on'))
  host.push(cmdLinkUp(n.brName))
  // the bridge's addresses, and its MAC before our port joins (the reference
  // pins the bridge to that MAC). NB: never put `link show` before other
  // commands in a batch: it leaves ip's global filter in link mode.
  if (isL3 && n.isGW && n.vlan === 0) host.push(cmdAddrShow(n.brName))
  // the reference creates both ends with txqueuelen 0 (netlink LinkAttrs{} literal)
  host.push(cmdVethAdd(hostVeth, ifName, netns, {mtu: n.mtu || undefined, peerMac: n.mac, txqlen: 0}))
  const vethLine = host.length
  const hostLen = host.length
  host.push(cmdLinkUp(hostVeth))
  host.push(cmdLinkSet(hostVeth, 'master', n.brName))
  if (n.hairpinMode) host.push(cmdLinkSet(hostVeth, 'type', 'bridge_slave', 'hairpin', 'on'))

  const tStart = t0()
  const hostP = (async () => {
    let r = await ipBatch(host, {json: true, allowFailure: true})
    // a concurrent ADD created the bridge between our check and our batch
    // (the reference ignores EEXIST here): run the rest again
    if (newBridge && r.code !== 0 && /Command failed -:1$/m.test(r.stderr) && /File exists/.test(r.stderr) && isBridge(n.brName)) {
      host.shift()
      r = await ipBatch(host, {json: true, allowFailure: true})
    }
    // the random host name is taken (the reference retries up to 10 names)
    for (let i = 0; i < 9 && r.code !== 0 && /File exists/.test(r.stderr) && linkExists(hostVeth); i++) {
      const failed = Number(/Command failed -:(\d+)/.exec(r.stderr)?.[1] ?? 0) + (host.length < hostLen ? 1 : 0)
      if (failed !== vethLine) break
      const next = randomVethName()
      for (const cmd of host) cmd.forEach((t, k) => t === hostVeth && (cmd[k] = next))
      hostVeth = next
      if (newBridge && host.length === hostLen && isBridge(n.brName)) host.shift()
      r = await ipBatch(host, {json: true, allowFailure: true})
    }
    return r
  })().finally(() => trace('host batch', tStart))
  const ipamConf = req.config
  const ipamP: Promise<CniResult | undefined> = (isL3 ? req.invokeIpam('ADD', ipamConf) : Promise.resolve(undefined)).finally(() => trace('ipam', tStart))
  const [hostR, ipamR] = await Promise.allSettled([hostP, ipamP])

  let ipamDone = ipamR.status === 'fulfilled' && isL3
  let vethMade = hostR.status === 'fulfilled' && hostR.value.code === 0
  const undo = async () => {
    if (vethMade) await ipBatch([cmdLinkDel(hostVeth)], {allowFailure: true})
    // a bridge we created and nobody else uses yet goes too (the reference keeps it)
    if (newBridge && isBridge(n.brName) && bridgePorts(n.brName).length === 0) await ipBatch([cmdLinkDel(n.brName)], {allowFailure: true})
    if (ipamDone) await req.invokeIpam('DEL', ipamConf).catch(() => undefined)
  }
  if (hostR.status === 'rejected' || hostR.value.code !== 0) {
    const why = hostR.status === 'rejected' ? (hostR.reason as Error).message : batchError(hostR.value)
    const line = hostR.status === 'fulfilled' ? Number(/Command failed -:(\d+)/.exec(hostR.value.stderr)?.[1] ?? 0) + (host.length < hostLen ? 1 : 0) : 0
    // the veth exists (and is ours) only when a command after its creation failed
    vethMade = line > vethLine
    await undo()
    if (line === vethLine && /File exists/.test(why)) throw fail(`container veth name provided (${ifName}) already exists`)
    throw fail(`failed to set up bridge "${n.brName}" and veth: ${why}`)
  }
  if (ipamR.status === 'rejected') {
    await undo()
    throw ipamR.reason
  }
  trySysctl(`net/ipv6/conf/${n.brName}/accept_ra`, '0')
  trySysctl(`net/ipv6/conf/${hostVeth}/accept_ra`, '0')
  if (n.vlan !== 0) {
    try {
      await bridgeVlanAdd(hostVeth, n.vlan)
    } catch (e) {
      await undo()
      throw fail(`failed to setup vlan tag on interface "${hostVeth}": ${(e as Error).message}`)
    }
  }
  const brAddrs = (parseJsonLines(hostR.value.stdout).flat() as IpAddrLink[]).find((l) => l.ifname === n.brName)
  const brPreMac = brAddrs?.address

  const result: CniResult = {
    cniVersion: '1.0.0',
    interfaces: [
      {name: n.brName, mac: ''},
      {name: hostVeth, mac: linkMac(hostVeth) ?? ''},
      {name: ifName, mac: '', sandbox: netns},
    ],
  }

  try {
    if (isL3) {
      const ipam = ipamR.value!
      result.ips = (ipam.ips ?? []).map((i) => ({...i}))
      result.routes = (ipam.routes ?? []).map((r) => ({...r}))
      if (result.ips.length === 0) throw fail('IPAM plugin returned missing IP config')
      const gws = calcGateways(result, n)
      const hasV6 = result.ips.some((i) => parseCidr(i.address).v6)
      const sysctls: Array<[string, string]> = []
      if (n.enableDad) {
        sysctls.push([`net/ipv6/conf/${ifName}/enhanced_dad`, '1'], [`net/ipv6/conf/${ifName}/accept_dad`, '1'])
      } else sysctls.push([`net/ipv6/conf/${ifName}/accept_dad`, '0'])
      sysctls.push([`net/ipv4/conf/${ifName}/arp_notify`, '1'])
      if (hasV6) sysctls.push(['net/ipv6/conf/lo/disable_ipv6', '0'], [`net/ipv6/conf/${ifName}/disable_ipv6`, '0'])
      // With DAD enabled the reference waits for tentative v6 addresses to settle before adding routes.
      const settle = n.enableDad && gatewaysOf(result).v6gw !== undefined
      const contCmds = [...configureIfaceCmds(ifName, result, !settle), cmdAddrShow(ifName)]
      const tC = t0()
      const contP = ipBatch(contCmds, {netns, json: true, sysctls}).finally(() => trace('container batch', tC))

      // gateway addresses on the bridge (host), in parallel with the container
      const gwP = (n.isGW ? setupGateways(n, gws, brAddrs, brPreMac, result) : Promise.resolve()).finally(() => trace('gateway batch', tC))
      // the masquerade rules need only the addresses: set them up alongside
      const masqP = n.ipMasq ? loadIpMasq().then((m) => m.setupIpMasq(req.netfilter, n.name, req.containerId, ipsOf(result))).finally(() => trace('masq', tC)) : Promise.resolve()
      const [contR, gwR, masqR] = await Promise.allSettled([contP, gwP, masqP])
      if (masqR.status === 'rejected') throw masqR.reason
      if (contR.status === 'rejected') throw fail(`failed to configure ${ifName} in ${netns}: ${(contR.reason as Error).message}`)
      if (gwR.status === 'rejected') throw gwR.reason
      const shown = parseJsonLines(contR.value.stdout).flat() as IpAddrLink[]
      result.interfaces![2].mac = shown.find((l) => l.ifname === ifName)?.address ?? ''
      if (n.macSpoofChk) await spoofCheckSetup(hostVeth, result.interfaces![2].mac!, req.containerId, ifName)
      if (settle) {
        await settleAddresses(netns, ifName)
        const {v4gw, v6gw} = gatewaysOf(result)
        const rc = routeCmds(ifName, result, v4gw, v6gw)
        if (rc.length) await ipBatch(rc, {netns})
      }
      const tW = t0()
      await waitPortUp(hostVeth)
      trace('port up', tW)
      if (n.isGW) {
        if (gws.v4.gws.length) ensureSysctl('net/ipv4/ip_forward', '1')
        if (gws.v6.gws.length) ensureSysctl('net/ipv6/conf/all/forwarding', '1')
      }
    } else {
      const r = await ipBatch([cmdLinkUp(ifName), cmdAddrShow(ifName)], {netns, json: true})
      const shown = parseJsonLines(r.stdout).flat() as IpAddrLink[]
      result.interfaces![2].mac = shown.find((l) => l.ifname === ifName)?.address ?? ''
      if (n.macSpoofChk) await spoofCheckSetup(hostVeth, result.interfaces![2].mac!, req.containerId, ifName)
    }
  } catch (e) {
    if (n.macSpoofChk) await spoofCheckTeardown(req.containerId, ifName).catch(() => undefined)
    if (n.ipMasq && isL3) await loadIpMasq().then((m) => m.teardownIpMasq(req.netfilter, n.name, req.containerId, ipsOf(result))).catch(() => undefined)
    await undo()
    throw e instanceof CniError ? e : fail((e as Error).message)
  }
  result.interfaces![0].mac = linkMac(n.brName) ?? ''
  if (result.routes && result.routes.length === 0) delete result.routes
  result.dns = n.dns
  trace('ADD total', tStart)
  return result
}

/**
 * macspoofchk (pkg/link/spoofcheck.go v1.1.1): table bridge nat, base chain
 * PREROUTING (filter, prerouting, priority -300), per attachment chains
 * cni-br-iface-<cid>-<ifname>[-mac]: only the container's MAC may leave its
 * veth. One nft transaction (the reference needs two).
 */
function spoofNames(containerId: string, ifName: string) {
  const ref = `${nftToken(containerId)}-${nftToken(ifName)}`
  const iface = `cni-br-iface-${ref}`
  return {iface, mac: `${iface}-mac`, comment: `macspoofchk-${ref}`}
}

async function spoofCheckSetup(hostVeth: string, mac: string, containerId: string, ifName: string): Promise<void> {
  const c = spoofNames(containerId, ifName)
  const comment = nftQuoted(c.comment)
  const script: NftCmd[] = [
    ['add', 'table', 'bridge', 'nat'],
    ['add', 'chain', 'bridge', 'nat', 'PREROUTING', nftBaseChain('filter', 'prerouting', -300, 'accept')],
    ['add', 'chain', 'bridge', 'nat', c.iface],
    ['add', 'chain', 'bridge', 'nat', c.mac],
    ['flush', 'chain', 'bridge', 'nat', c.iface],
    ['flush', 'chain', 'bridge', 'nat', c.mac],
    ['add', 'rule', 'bridge', 'nat', 'PREROUTING', 'iifname', nftQuoted(hostVeth), 'jump', c.iface, 'comment', comment],
    ['add', 'rule', 'bridge', 'nat', c.iface, 'jump', c.mac, 'comment', comment],
    ['add', 'rule', 'bridge', 'nat', c.mac, 'ether', 'saddr', normalizeMac(mac), 'return', 'comment', comment],
    ['add', 'rule', 'bridge', 'nat', c.mac, 'drop', 'comment', comment],
  ]
  const r = await nftApply(script, {allowFailure: true})
  if (r.code !== 0) throw fail(`failed to setup spoof-check: ${r.stderr.trim()}`)
}

async function spoofCheckTeardown(containerId: string, ifName: string): Promise<void> {
  const c = spoofNames(containerId, ifName)
  const items = (await nftJson(['list', 'chain', 'bridge', 'nat', 'PREROUTING'])) as Array<{rule?: {handle: number; comment?: string}}>
  const lines: NftCmd[] = []
  for (const it of items) {
    if (it.rule && it.rule.comment === c.comment) lines.push(['delete', 'rule', 'bridge', 'nat', 'PREROUTING', 'handle', Number(it.rule.handle)])
  }
  const chains: NftCmd[] = [['delete', 'chain', 'bridge', 'nat', c.iface], ['delete', 'chain', 'bridge', 'nat', c.mac]]
  if (lines.length) await nftApply(lines, {allowFailure: true})
  await nftApply(chains, {allowFailure: true})
}

async function bridgeVlanAdd(dev: string, vid: number): Promise<void> {
  // BridgeVlanAdd(link, vid, pvid=true, untagged=true, self=false, master=true)
  await run('bridge', ['vlan', 'add', 'dev', assertIfName(dev), 'vid', String(vid), 'pvid', 'untagged', 'master'])
}

/** Puts the gateway addresses on the bridge (or its vlan interface), ensureAddr style. */
async function setupGateways(n: BridgeConf, gws: {v4: GwInfo; v6: GwInfo}, brAddrs: IpAddrLink | undefined, brPreMac: string | undefined, result: CniResult): Promise<void> {
  const all = [...gws.v4.gws, ...gws.v6.gws]
  if (all.length === 0) return
  let dev = n.brName
  let current = brAddrs
  let pin = brPreMac
  if (n.vlan !== 0) {
    dev = await ensureVlanInterface(n)
    const r = await ipBatch([cmdAddrShow(dev)], {json: true})
    current = (parseJsonLines(r.stdout).flat() as IpAddrLink[])[0]
    result.interfaces!.push({name: dev, mac: linkMac(dev) ?? ''})
    pin = linkMac(dev)
  }
  for (let attempt = 0; ; attempt++) {
    const cmds: IpCmd[] = []
    let pinned = false
    for (const gw of all) {
      const c = ensureAddrCmds(dev, current, gw, n.forceAddress, pinned ? undefined : pin)
      if (c.length) pinned = true
      cmds.push(...c)
    }
    if (!cmds.length) return
    const r = await ipBatch(cmds, {allowFailure: true})
    if (r.code === 0) return
    // a concurrent ADD added the gateway first (the reference ignores EEXIST): look again
    if (attempt === 0 && /File exists|already assigned/.test(r.stderr)) {
      const again = await ipBatch([cmdAddrShow(dev)], {json: true})
      current = (parseJsonLines(again.stdout).flat() as IpAddrLink[])[0]
      continue
    }
    throw fail(`failed to set bridge addr: ${batchError(r)}`)
  }
}

/** ensureVlanInterface: a veth pair "<br>.<vlan>" (host side) <-> random port on the bridge with the vlan tag. */
async function ensureVlanInterface(n: BridgeConf): Promise<string> {
  const name = assertIfName(`${n.brName}.${n.vlan}`, 'vlan interface name')
  if (linkExists(name)) return name
  const port = randomVethName()
  const mtu = Number(linkAttr(n.brName, 'mtu') ?? 0)
  const cmds: IpCmd[] = []
  cmds.push(cmdVethAdd(port, name, undefined, {mtu: mtu || undefined, txqlen: 0}), cmdLinkUp(port), cmdLinkSet(port, 'master', n.brName), cmdLinkUp(name))
  await ipBatch(cmds)
  trySysctl(`net/ipv6/conf/${port}/accept_ra`, '0')
  await bridgeVlanAdd(port, n.vlan)
  return name
}

/** SettleAddresses: wait (<= 10 s) until no address of ifName is tentative. */
async function settleAddresses(netns: string, ifName: string): Promise<void> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const r = await ipBatch([cmdAddrShow(ifName)], {netns, json: true})
    const link = (parseJsonLines(r.stdout).flat() as IpAddrLink[])[0]
    const busy = (link?.addr_info ?? []).some((a) => a.tentative || a.dadfailed)
    if (!busy) return
    if (Date.now() > deadline) throw fail(`link ${ifName} still has tentative addresses after 10 seconds`)
    await sleep(100)
  }
}

/** "check bridge port state": host veth operstate must become up. */
async function waitPortUp(hostVeth: string): Promise<void> {
  // the reference sleeps 0, 50, 500, 1000, 1000 ms; we poll finer within the same total
  const retries = [0, 1, 2, 5, 10, 32, 500, 1000, 1000]
  for (let i = 0; i < retries.length; i++) {
    if (retries[i]) await sleep(retries[i])
    const state = linkAttr(hostVeth, 'operstate')
    if (state === undefined) throw fail(`Link not found: ${hostVeth}`)
    if (state === 'up') return
    if (i === retries.length - 1) throw fail(`bridge port in error state: ${state}`)
  }
}

async function del(req: PluginRequest): Promise<void> {
  const n = loadBridgeConf(req.config, req.args)
  const isL3 = n.ipamType !== ''
  const prev = req.config.prevResult
  const ipamDel = async () => {
    if (isL3) await req.invokeIpam('DEL', req.config)
  }
  const masqDown = async (ips: {address: string}[] | undefined) => {
    if (isL3 && n.ipMasq) {
      const m = await loadIpMasq()
      await m.teardownIpMasq(req.netfilter, n.name, req.containerId, ips)
    }
  }
  const spoofDown = async () => {
    if (n.macSpoofChk && validIfName(req.ifName)) await spoofCheckTeardown(req.containerId, req.ifName)
  }
  if (!req.netns || !netnsExists(req.netns)) {
    // The reference returns after IPAM here and leaks the masquerade rules
    // (plugins#810) and the spoof-check chains; we also remove them, using
    // the cached result.
    await ipamDel()
    await masqDown(ipsOf(prev))
    await spoofDown()
    return
  }
  const ifName = assertIfName(req.ifName)
  // container: read the addresses and delete the link in one process; IPAM in parallel
  const tD = t0()
  const contP = ipBatch([cmdAddrShow(ifName), cmdLinkDel(ifName)], {netns: req.netns, json: true, allowFailure: true}).finally(() => trace('DEL container batch', tD))
  // with the cached result the masquerade teardown needs nothing from the
  // container: run it alongside (it only depends on network name and id)
  const earlyMasq = isL3 && n.ipMasq && (prev?.ips?.length ?? 0) > 0
  const masqP = earlyMasq ? masqDown(ipsOf(prev)).finally(() => trace('DEL masq', tD)) : Promise.resolve()
  const [contR, ipamR, masqR] = await Promise.allSettled([contP, ipamDel().finally(() => trace('DEL ipam', tD)), masqP])
  let ipnets: {address: string}[] | undefined
  if (contR.status === 'fulfilled') {
    const r = contR.value
    if (r.code === 0) {
      const link = (parseJsonLines(r.stdout).flat() as IpAddrLink[])[0]
      ipnets = link ? globalCidrs(link).map((address) => ({address})) : []
    } else {
      const why = batchError(r)
      if (!/does not exist|Cannot find device/i.test(why) && !isNetnsGoneError(why)) throw fail(`failed to delete "${ifName}": ${why}`)
    }
  } else throw contR.reason
  if (ipamR.status === 'rejected') throw ipamR.reason
  if (masqR.status === 'rejected') throw masqR.reason
  await spoofDown()
  // link gone already: fall back to the cached result for the masquerade rules
  if (!earlyMasq) await masqDown(ipnets ?? ipsOf(prev))
}

async function check(req: PluginRequest): Promise<void> {
  const n = loadBridgeConf(req.config, req.args)
  const netns = req.netns
  if (!netns || !netnsExists(netns)) throw fail(`failed to open netns "${netns}"`)
  if (n.ipamType) await req.invokeIpam('CHECK', req.config)
  const prev = req.config.prevResult
  if (!prev) throw fail('Required prevResult missing')
  const ifName = assertIfName(req.ifName)
  let brMap: CniInterface | undefined
  let contMap: CniInterface | undefined
  for (const intf of prev.interfaces ?? []) {
    if (intf.name === n.brName) brMap = intf
    else if (intf.name === ifName && intf.sandbox === netns) contMap = intf
  }
  // host side and container side state, one process each
  const [hostR, contR] = await Promise.all([
    ipBatch([['link', 'show']], {json: true, details: true}),
    ipBatch(
      [cmdAddrShow(ifName), cmdRouteShowAll()],
      {netns, json: true, details: true, allowFailure: true},
    ),
  ])
  const hostLinks = (parseJsonLines(hostR.stdout)[0] ?? []) as IpLink[]
  if (!brMap || !brMap.name) throw fail('Interface name missing ')
  const br = hostLinks.find((l) => l.ifname === brMap!.name)
  if (!br) throw fail(`Interface name ${brMap.name} not found`)
  if (brMap.sandbox) throw fail(`Interface ${brMap.name} should not be in sandbox`)
  if (br.linkinfo?.info_kind !== 'bridge') throw fail(`Interface ${brMap.name} does not have link type of bridge`)
  if (brMap.mac && brMap.mac !== br.address) throw fail(`Bridge interface ${brMap.name} Mac doesn't match: ${brMap.mac}`)
  const promisc = (br.promiscuity ?? 0) !== 0
  if (promisc !== n.promiscMode) {
    throw fail(`Bridge interface ${brMap.name} configured Promisc Mode ${n.promiscMode} doesn't match current state: ${promisc} `)
  }
  if (netns !== contMap?.sandbox) throw fail(`Sandbox in prevResult ${contMap?.sandbox ?? ''} doesn't match configured netns: ${netns}`)
  if (contR.code !== 0) throw fail(`Interface name ${contMap.name} not found`)
  const docs = parseJsonLines(contR.stdout)
  const cont = ((docs[0] ?? []) as Array<IpLink & IpAddrLink>)[0]
  if (!cont) throw fail(`Interface name ${contMap.name} not found`)
  if (cont.linkinfo?.info_kind !== 'veth') throw fail(`Error: Container interface ${cont.ifname} not of type veth`)
  if (contMap.mac && contMap.mac !== cont.address) {
    throw fail(`Interface ${contMap.name} Mac ${contMap.mac} doesn't match container Mac: ${cont.address}`)
  }
  let vethFound = false
  for (const intf of prev.interfaces ?? []) {
    if (intf.name === brMap.name || intf.name === contMap.name) continue
    const l = hostLinks.find((h) => h.ifname === intf.name)
    if (!l) throw fail(`Interface name ${intf.name} not found`)
    if (intf.sandbox) throw fail(`Interface ${intf.name} should not be in sandbox`)
    if (l.linkinfo?.info_kind !== 'veth') continue
    if (l.ifindex !== cont.link_index || cont.ifindex !== l.link_index || l.master !== br.ifname) continue
    if (intf.mac && intf.mac !== l.address) throw fail(`Interface ${intf.name} Mac doesn't match: ${intf.mac} not found`)
    vethFound = true
    break
  }
  if (!vethFound) throw fail(`CNI veth created for bridge ${n.brName} was not found`)
  // addresses and routes
  const addrs = cont
  const have = new Set((addrs?.addr_info ?? []).map((a) => `${parseIp(a.local).ip}/${a.prefixlen}`))
  const routes4 = mainRoutes((docs[1] ?? []) as IpRoute[], false)
  const routes6 = mainRoutes((docs[1] ?? []) as IpRoute[], true)
  for (const ipc of prev.ips ?? []) {
    const c = parseCidr(ipc.address)
    if (!have.has(`${c.ip}/${c.prefix}`)) throw fail(`Failed to match addr ${ipc.address} on interface ${ifName}`)
    const net = networkOf(c)
    const rs = c.v6 ? routes6 : routes4
    if (!rs.some((r) => routeDst(r, c.v6) === `${net.ip}/${net.prefix}`)) {
      throw fail(`Failed to find Gateway ${ipc.gateway ?? '<nil>'} for interface ${ifName}`)
    }
  }
  for (const r of prev.routes ?? []) {
    const d = networkOf(parseCidr(r.dst))
    const dst = `${d.ip}/${d.prefix}`
    const rs = d.v6 ? routes6 : routes4
    const isDefault = d.prefix === 0
    const ok = rs.some((x) => routeDst(x, d.v6) === dst && (isDefault || r.gw === undefined || (x.gateway !== undefined && parseIp(x.gateway).ip === parseIp(r.gw).ip)))
    if (!ok) throw fail(`Expected Route {Dst:${r.dst} GW:${r.gw ?? '<nil>'}} not found in routing table`)
  }
}

/**
 * GC (CNI 1.1): bridge keeps no per-attachment state of its own beyond what
 * DEL removes; its IPAM plugin does (leases), so GC is delegated to it with
 * the valid attachments, as the reference plugins of 1.1 do.
 */
async function gc(req: PluginRequest): Promise<void> {
  if (req.config.ipam?.type) await req.invokeIpam('GC', req.config)
}

/** The ADD's config checks that touch nothing: bridge fields, then its IPAM's. */
async function precheck(req: PluginRequest): Promise<void> {
  const n = loadBridgeConf(req.config, req.args)
  if (n.hairpinMode && n.promiscMode) throw fail('cannot set hairpin mode and promiscuous mode at the same time.')
  if (n.ipamType !== '') await precheckIpam(req)
}

const plugin: EmbeddedPlugin = {precheck, add, del, check, gc}
export default plugin

export type {CniIpConfig}

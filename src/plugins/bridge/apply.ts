import {CniError, type CniResult, type PluginRequest} from '../types.js'
import {batchError, ipBatch, parseJsonLines, type BatchResult} from '../../kernel/ip/batch.js'
import {isNetns, isNetnsGoneError, netnsExists} from '../../kernel/netns.js'
import {ensureSysctl, trySysctl} from '../../kernel/sysctl.js'
import {bridgePorts, isBridge, linkAttr, linkExists, linkMac} from '../../kernel/sysfs.js'
import {assertIfName, cmdLinkDel, randomVethName, validIfName} from '../../kernel/ip/link.js'
import {cmdAddrShow, globalCidrs, type IpAddrLink} from '../../kernel/ip/addr.js'
import {bridgeVlanAdd} from '../../kernel/ip/vlan.js'
import {spoofCheckSetup, spoofCheckTeardown} from '../../kernel/netfilter/spoofcheck.js'
import type {FirewallTx} from '../../kernel/netfilter/firewall.js'
import {fail, type BridgeConf} from './config.js'
import {
  addConf,
  copyIpam,
  ipsOf,
  planContainer,
  planGatewayAddrs,
  planHost,
  planL2Container,
  planPort,
  planRoutes,
  planVlanIf,
  vlanIfName,
  type BridgeOp,
  type GwInfo,
} from './plan.js'

/**
 * Runs the bridge plan (plan.ts) through the kernel/ helpers, with the
 * reference's retries and the undo of a failed ADD. Processes: one host
 * batch alongside IPAM, one container batch alongside the gateway batch and
 * the masquerade rules.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// The masquerade of the network for these addresses (ipMasq): the only calls
// into the firewall. They are recorded on the chain's firewall transaction,
// which the runtime commits when the chain succeeded.
async function masqUp(fw: FirewallTx, network: string, containerId: string, ifName: string | undefined, ips: {address: string}[]): Promise<void> {
  await fw.masquerade({network, containerId, ...(ifName ? {ifName} : {}), addresses: ips.map((i) => i.address)})
}

async function masqDown(fw: FirewallTx, network: string, containerId: string, ifName: string, ips: {address: string}[] | undefined): Promise<void> {
  await fw.removeMasquerade({network, containerId, ifName, ...(ips ? {addresses: ips.map((i) => i.address)} : {})})
}

/**
 * Runs one operation of the plan (the ip batches whose output or failure is
 * read are run where they are read). `fw` is the chain's firewall
 * transaction, which only the ipmasq operation uses.
 */
async function runOp(op: BridgeOp, fw?: FirewallTx): Promise<void> {
  switch (op.op) {
    case 'ip':
      if (op.ns === 'host') await ipBatch(op.cmds)
      else await ipBatch(op.cmds, {netns: op.netns, ...(op.sysctls ? {sysctls: op.sysctls} : {})})
      return
    case 'sysctl':
      if (op.mode === 'try') trySysctl(op.key, op.value)
      else ensureSysctl(op.key, op.value)
      return
    case 'bridge-vlan':
      await bridgeVlanAdd(op.dev, op.vid)
      return
    case 'spoofcheck':
      await spoofCheckSetup(op.hostVeth, op.mac, op.containerId, op.ifName)
      return
    case 'settle':
      await settleAddresses(op.netns, op.ifName)
      return
    case 'wait-port-up':
      await waitPortUp(op.dev)
      return
    case 'ipmasq':
      if (!fw) throw fail('ipmasq: no netfilter transaction')
      await masqUp(fw, op.network, op.containerId, op.ifName, op.ips)
      return
  }
}

export async function applyAdd(req: PluginRequest, conf: BridgeConf): Promise<CniResult> {
  const n = addConf(conf)
  const isL3 = n.ipamType !== ''
  const ifName = assertIfName(req.ifName)
  const netns = req.netns
  if (!netns || !netnsExists(netns)) throw fail(`failed to open netns "${netns}": no such file or directory`)
  if (!isNetns(netns)) throw fail(`failed to open netns "${netns}": not a network namespace`)
  // The reference treats an ipam section without type as layer 2; we refuse it.
  if (req.config.ipam !== undefined && !isL3) throw fail('ipam: missing "type" (remove the ipam section for a layer-2 only network)')
  // Bad IPAM input must change nothing: the runtime parsed the IPAM plugin's
  // config (with an ADD's checks) before this ADD.
  if (linkExists(n.brName) && !isBridge(n.brName)) throw fail(`failed to create bridge "${n.brName}": "${n.brName}" already exists but is not a bridge`)

  let hostVeth = randomVethName()
  // ---- step 1: host batch (bridge + veth) in parallel with IPAM ----
  const plan = planHost(n, linkExists(n.brName), hostVeth, ifName, netns)
  const host = plan.cmds
  const {newBridge, vethLine} = plan
  const hostLen = vethLine
  const hostP = (async () => {
    let r = await ipBatch(host, {json: true, allowFailure: true})
    // a concurrent ADD created the bridge between our check and our batch
    // (the reference ignores EEXIST here): run the rest again
    if (newBridge && r.code !== 0 && r.failedAt === 1 && /File exists/.test(r.stderr) && isBridge(n.brName)) {
      host.shift()
      r = await ipBatch(host, {json: true, allowFailure: true})
    }
    // the random host name is taken (the reference retries up to 10 names)
    for (let i = 0; i < 9 && r.code !== 0 && /File exists/.test(r.stderr) && linkExists(hostVeth); i++) {
      const failed = r.failedAt + (host.length < hostLen ? 1 : 0)
      if (failed !== vethLine) break
      const next = randomVethName()
      for (const cmd of host) cmd.forEach((t, k) => t === hostVeth && (cmd[k] = next))
      hostVeth = next
      if (newBridge && host.length === hostLen && isBridge(n.brName)) host.shift()
      r = await ipBatch(host, {json: true, allowFailure: true})
    }
    return r
  })()
  const ipamP: Promise<CniResult | undefined> = isL3 ? req.invokeIpam('ADD') : Promise.resolve(undefined)
  const [hostR, ipamR] = await Promise.allSettled([hostP, ipamP])

  const ipamDone = ipamR.status === 'fulfilled' && isL3
  let vethMade = hostR.status === 'fulfilled' && hostR.value.code === 0
  const undo = async () => {
    if (vethMade) await ipBatch([cmdLinkDel(hostVeth)], {allowFailure: true})
    // a bridge we created and nobody else uses yet goes too (the reference keeps it)
    if (newBridge && isBridge(n.brName) && bridgePorts(n.brName).length === 0) await ipBatch([cmdLinkDel(n.brName)], {allowFailure: true})
    if (ipamDone) await req.invokeIpam('DEL').catch(() => undefined)
  }
  if (hostR.status === 'rejected' || hostR.value.code !== 0) {
    const why = hostR.status === 'rejected' ? (hostR.reason as Error).message : batchError(hostR.value)
    const line = hostR.status === 'fulfilled' ? hostR.value.failedAt + (host.length < hostLen ? 1 : 0) : 0
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
  for (const op of planPort(n, hostVeth)) {
    if (op.op !== 'bridge-vlan') {
      await runOp(op, req.firewall)
      continue
    }
    try {
      await runOp(op, req.firewall)
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
      copyIpam(result, ipamR.value!)
      const c = planContainer(n, result, ifName, netns)
      const contP = ipBatch(c.batch.cmds, {netns, json: true, sysctls: c.batch.sysctls})
      // gateway addresses on the bridge (host), in parallel with the container
      const gwP = n.isGW ? setupGateways(n, c.gws, brAddrs, brPreMac, result) : Promise.resolve()
      // the masquerade rules need only the addresses: set them up alongside
      const masqP = n.ipMasq ? runOp({op: 'ipmasq', network: n.name, containerId: req.containerId, ifName, ips: ipsOf(result)}, req.firewall) : Promise.resolve()
      const [contR, gwR, masqR] = await Promise.allSettled([contP, gwP, masqP])
      if (masqR.status === 'rejected') throw masqR.reason
      if (contR.status === 'rejected') throw fail(`failed to configure ${ifName} in ${netns}: ${(contR.reason as Error).message}`)
      if (gwR.status === 'rejected') throw gwR.reason
      const shown = parseJsonLines(contR.value.stdout).flat() as IpAddrLink[]
      result.interfaces![2].mac = shown.find((l) => l.ifname === ifName)?.address ?? ''
      if (n.macSpoofChk) await runOp({op: 'spoofcheck', hostVeth, mac: result.interfaces![2].mac!, containerId: req.containerId, ifName})
      if (c.settle) {
        await runOp({op: 'settle', netns, ifName})
        const rc = planRoutes(ifName, result)
        if (rc.length) await runOp({op: 'ip', ns: 'container', netns, cmds: rc})
      }
      await runOp({op: 'wait-port-up', dev: hostVeth})
      for (const op of c.forwarding) await runOp(op, req.firewall)
    } else {
      const l2 = planL2Container(ifName, netns)
      const r = await ipBatch(l2.cmds, {netns, json: true})
      const shown = parseJsonLines(r.stdout).flat() as IpAddrLink[]
      result.interfaces![2].mac = shown.find((l) => l.ifname === ifName)?.address ?? ''
      if (n.macSpoofChk) await runOp({op: 'spoofcheck', hostVeth, mac: result.interfaces![2].mac!, containerId: req.containerId, ifName})
    }
  } catch (e) {
    if (n.macSpoofChk) await spoofCheckTeardown(req.containerId, ifName).catch(() => undefined)
    if (n.ipMasq && isL3) await masqDown(req.firewall, n.name, req.containerId, ifName, ipsOf(result)).catch(() => undefined)
    await undo()
    throw e instanceof CniError ? e : fail((e as Error).message)
  }
  result.interfaces![0].mac = linkMac(n.brName) ?? ''
  if (result.routes && result.routes.length === 0) delete result.routes
  result.dns = n.dns
  return result
}

/** The `addr show` of one link, parsed. */
async function addrsOf(dev: string): Promise<IpAddrLink | undefined> {
  const r = await ipBatch([cmdAddrShow(dev)], {json: true})
  return (parseJsonLines(r.stdout).flat() as IpAddrLink[])[0]
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
    current = await addrsOf(dev)
    result.interfaces!.push({name: dev, mac: linkMac(dev) ?? ''})
    pin = linkMac(dev)
  }
  for (let attempt = 0; ; attempt++) {
    const cmds = planGatewayAddrs(dev, current, all, n.forceAddress, pin)
    if (!cmds.length) return
    const r: BatchResult = await ipBatch(cmds, {allowFailure: true})
    if (r.code === 0) return
    // a concurrent ADD added the gateway first (the reference ignores EEXIST): look again
    if (attempt === 0 && /File exists|already assigned/.test(r.stderr)) {
      current = await addrsOf(dev)
      continue
    }
    throw fail(`failed to set bridge addr: ${batchError(r)}`)
  }
}

/** ensureVlanInterface: a veth pair "<br>.<vlan>" (host side) <-> random port on the bridge with the vlan tag. */
async function ensureVlanInterface(n: BridgeConf): Promise<string> {
  const name = vlanIfName(n)
  if (linkExists(name)) return name
  const port = randomVethName()
  const mtu = Number(linkAttr(n.brName, 'mtu') ?? 0)
  for (const op of planVlanIf(n, name, port, mtu)) await runOp(op)
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

export async function applyDel(req: PluginRequest, n: BridgeConf): Promise<void> {
  const isL3 = n.ipamType !== ''
  const prev = req.config.prevResult
  const ipamDel = async () => {
    if (isL3) await req.invokeIpam('DEL')
  }
  const masqTeardown = async (ips: {address: string}[] | undefined) => {
    if (isL3 && n.ipMasq) await masqDown(req.firewall, n.name, req.containerId, req.ifName, ips)
  }
  const spoofDown = async () => {
    if (n.macSpoofChk && validIfName(req.ifName)) await spoofCheckTeardown(req.containerId, req.ifName)
  }
  if (!req.netns || !netnsExists(req.netns)) {
    // The reference returns after IPAM here and leaks the masquerade rules
    // (plugins#810) and the spoof-check chains; we also remove them, using
    // the cached result.
    await ipamDel()
    await masqTeardown(ipsOf(prev))
    await spoofDown()
    return
  }
  const ifName = assertIfName(req.ifName)
  // container: read the addresses and delete the link in one process; IPAM in parallel
  const contP = ipBatch([cmdAddrShow(ifName), cmdLinkDel(ifName)], {netns: req.netns, json: true, allowFailure: true})
  // with the cached result the masquerade teardown needs nothing from the
  // container: run it alongside (it only depends on network name and id)
  const earlyMasq = isL3 && n.ipMasq && (prev?.ips?.length ?? 0) > 0
  const masqP = earlyMasq ? masqTeardown(ipsOf(prev)) : Promise.resolve()
  const [contR, ipamR, masqR] = await Promise.allSettled([contP, ipamDel(), masqP])
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
  if (!earlyMasq) await masqTeardown(ipnets ?? ipsOf(prev))
}

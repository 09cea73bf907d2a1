import type {CniInterface, PluginRequest} from '../types.js'
import {ipBatch, parseJsonLines} from '../../kernel/ip/batch.js'
import {netnsExists} from '../../kernel/netns.js'
import {assertIfName, type IpLink} from '../../kernel/ip/link.js'
import {cmdAddrShow, networkOf, parseCidr, parseIp, type IpAddrLink} from '../../kernel/ip/addr.js'
import {cmdRouteShowAll, mainRoutes, routeDst, type IpRoute} from '../../kernel/ip/route.js'
import {fail, type BridgeConf} from './config.js'

/** CHECK of bridge.go v1.1.1: the bridge, the veth pair, the container's addresses and routes against prevResult. */
export async function checkBridge(req: PluginRequest, n: BridgeConf): Promise<void> {
  const netns = req.netns
  if (!netns || !netnsExists(netns)) throw fail(`failed to open netns "${netns}"`)
  if (n.ipamType) await req.invokeIpam('CHECK')
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

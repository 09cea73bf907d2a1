import {createHash} from 'node:crypto'
import {formatCidr} from '../../kernel/ip/addr.js'
import {bridgeBatch, ipBatch, type IpCmd} from '../../kernel/ip/batch.js'
import {cmdLinkDel, cmdLinkUp} from '../../kernel/ip/link.js'
import {cmdAddrDel} from '../../kernel/ip/addr.js'
import {
  type PeerEntries,
  type Underlay,
  type VxlanState,
  cmdAddrReplace,
  cmdFdbDel,
  cmdFdbReplace,
  cmdNeighDel,
  cmdNeighReplace,
  cmdRouteDel,
  cmdRouteReplaceOnlink,
  cmdVxlanAdd,
  readFdb,
  readPeerEntries,
  readVxlan,
} from '../../kernel/ip/vxlan.js'
import {VXLAN_PORT, vxlanDevice} from './config.js'
import type {SliceRecord} from './lease.js'

/**
 * The data plane of an overlay network on this host, flannel's vxlan backend
 * with directRouting off: the device ctrnet.<vni> with this host's VTEP
 * address (the network address of its slice, as a /32), and per peer an FDB
 * entry, a permanent neighbour entry and an on-link route.
 */

/** The VTEP address of a slice: its network address (flannel: lease.Subnet.IP). */
export function vtepOf(r: Pick<SliceRecord, 'slice'>): string {
  return r.slice.ip
}

/**
 * The VTEP MAC of a host: derived from the VNI and its underlay address
 * (locally administered, unicast), so a device re-created after a reboot or
 * a crash has the MAC its peers already hold in their FDB and neighbours.
 */
export function vtepMac(vni: number, underlayIp: string): string {
  const b = createHash('sha256').update(`ctrnet-overlay/${vni}/${underlayIp}`).digest().subarray(0, 6)
  b[0] = (b[0]! & 0xfe) | 0x02
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':')
}

/** Creates the device when missing (or re-creates it when its VNI, address or port differ); returns it. */
export async function ensureDevice(vni: number, underlay: Underlay, mtu: number, observed: VxlanState | undefined): Promise<{dev: VxlanState; created: boolean}> {
  const name = vxlanDevice(vni)
  let dev = observed
  const cmds: IpCmd[] = []
  const mac = vtepMac(vni, underlay.ip)
  if (dev && (dev.mac !== mac || dev.vni !== vni || dev.local !== underlay.ip || dev.port !== VXLAN_PORT || dev.learning !== false || dev.mtu !== mtu)) {
    cmds.push(cmdLinkDel(name))
    dev = undefined
  }
  if (!dev) cmds.push(cmdVxlanAdd({name, vni, local: underlay.ip, dev: underlay.dev, port: VXLAN_PORT, mtu, mac}))
  if (!cmds.length) return {dev: dev!, created: false}
  await ipBatch(cmds)
  return {dev: {mac, mtu, up: false, vni, local: underlay.ip, port: VXLAN_PORT, learning: false}, created: true}
}

/**
 * Makes the device's entries exactly the peers' and puts this host's VTEP
 * address on it, changing only what differs (an ADD on a network already in
 * step runs no batch at all): FDB first, then neighbours and routes (flannel
 * sets the route last: the kernel must never resolve a VTEP address itself);
 * entries of peers that are gone are removed.
 */
export async function syncPeers(vni: number, mine: SliceRecord, dev: VxlanState, peers: SliceRecord[], observed?: Omit<PeerEntries, 'fdb'> & {fdb?: PeerEntries['fdb']}): Promise<void> {
  const name = vxlanDevice(vni)
  // a device just made holds nothing; one observed before needs only its FDB read
  const have: PeerEntries = observed ? {...observed, fdb: observed.fdb ?? (await readFdb(name))} : await readPeerEntries(name)
  const fdb: IpCmd[] = []
  const ip: IpCmd[] = []
  const vtep = `${vtepOf(mine)}/32`
  if (!have.addrs.includes(vtep)) ip.push(cmdAddrReplace(name, vtep))
  for (const a of have.addrs) if (a !== vtep) ip.push(cmdAddrDel(name, a))
  if (!dev.up) ip.push(cmdLinkUp(name))
  const wantFdb = new Set(peers.map((p) => `${p.vtepMac}|${p.publicIp}`))
  const haveFdb = new Set(have.fdb.map((f) => `${f.mac.toLowerCase()}|${f.dst}`))
  for (const f of have.fdb) if (!wantFdb.has(`${f.mac.toLowerCase()}|${f.dst}`)) fdb.push(cmdFdbDel(name, f.mac, f.dst))
  for (const p of peers) if (!haveFdb.has(`${p.vtepMac}|${p.publicIp}`)) fdb.push(cmdFdbReplace(name, p.vtepMac, p.publicIp))
  const wantNeigh = new Map(peers.map((p) => [vtepOf(p), p.vtepMac]))
  const haveNeigh = new Map(have.neighs.map((n) => [n.ip, n.mac.toLowerCase()]))
  const wantRoute = new Map(peers.map((p) => [formatCidr(p.slice), vtepOf(p)]))
  const haveRoute = new Map(have.routes.map((r) => [r.dst, r.gw]))
  for (const r of have.routes) if (wantRoute.get(r.dst) !== r.gw) ip.push(cmdRouteDel(r.dst, name))
  for (const [addr, mac] of haveNeigh) if (wantNeigh.get(addr) !== mac) ip.push(cmdNeighDel(name, addr))
  for (const [addr, mac] of wantNeigh) if (haveNeigh.get(addr) !== mac) ip.push(cmdNeighReplace(name, addr, mac))
  for (const [dst, gw] of wantRoute) if (haveRoute.get(dst) !== gw) ip.push(cmdRouteReplaceOnlink(dst, gw, name))
  if (fdb.length) await bridgeBatch(fdb)
  if (ip.length) await ipBatch(ip)
}

/** Removes the device (network rm): its routes, neighbours and FDB entries go with it. */
export async function removeDevice(vni: number): Promise<void> {
  const name = vxlanDevice(vni)
  if (await readVxlan(name)) await ipBatch([cmdLinkDel(name)])
}

import {formatCidr} from '../../kernel/ip/addr.js'
import {findUnderlay, observeOverlay} from '../../kernel/ip/vxlan.js'
import {type EtcdClient, EtcdError} from '../../sys/etcd.js'
import {type OverlayConf, VXLAN_OVERHEAD, etcdClientOf, vxlanDevice} from './config.js'
import {OverlayError} from './errors.js'
import {ensureDevice, removeDevice, syncPeers} from './dataplane.js'
import {acquireSlice, listSlices, releaseSlice} from './lease.js'
import {readState, removeState, withStateLock, writeState} from './state.js'

export interface JoinResult {
  slice: string
  mtu: number
  peers: number
}

/**
 * This host in an overlay network, once: the device, this host's slice
 * (renewed, or leased by transaction), the VTEP address and every peer's
 * entries, under the host's lock of the network. The ADD runs it before it
 * delegates to bridge; the daemon runs it on every change etcd reports and
 * often enough to renew the slice's lease, with `joinedOnly`: then a host
 * that has left (`network rm` removed the state under the same lock) stays
 * out, and the result is undefined.
 */
export async function joinOverlay(o: OverlayConf, client: EtcdClient, opts: {joinedOnly: true}): Promise<JoinResult | undefined>
export async function joinOverlay(o: OverlayConf, client?: EtcdClient): Promise<JoinResult>
export async function joinOverlay(o: OverlayConf, client = etcdClientOf(o), opts: {joinedOnly?: boolean} = {}): Promise<JoinResult | undefined> {
  return withStateLock(o.stateDir, o.name, async () => {
    const before = readState(o.stateDir, o.name)
    if (opts.joinedOnly && before?.vni !== o.vni) return undefined
    // etcd's records are read (and its connection opened) while ip reads the host
    const listed = listSlices(client, o.vni, o)
    listed.catch(() => undefined)
    const view = await observeOverlay(vxlanDevice(o.vni), o.underlay ?? {}).catch((err: Error) => {
      throw new OverlayError('underlay', `overlay: underlay: ${err.message}`)
    })
    const underlay = view.underlay
    const mtu = o.mtu || underlay.mtu - VXLAN_OVERHEAD
    const {dev, created} = await ensureDevice(o.vni, underlay, mtu, view.dev)
    const {mine, peers} = await acquireSlice(client, {
      vni: o.vni,
      subnet: o.subnet,
      hostSubnetSize: o.hostSubnetSize,
      publicIp: underlay.ip,
      vtepMac: dev.mac,
      ttl: o.leaseTtl,
      preferred: before?.vni === o.vni ? before.slice : undefined,
    }, listed).catch((err: unknown) => {
      // etcd unreachable or refusing: one line naming it; the caller may retry
      if (err instanceof EtcdError) throw new OverlayError('etcd', err.message)
      throw err
    })
    await syncPeers(o.vni, mine, dev, peers, created ? {addrs: [], routes: [], neighs: [], fdb: []} : view.entries)
    const slice = formatCidr(mine.slice)
    if (before?.slice !== slice || before.publicIp !== underlay.ip || before.vni !== o.vni) {
      writeState(o.stateDir, o.name, {vni: o.vni, slice, publicIp: underlay.ip})
    }
    return {slice, mtu, peers: peers.length}
  })
}

/** The MTU the ADD gives the bridge and the containers: the option, else the underlay's minus VXLAN's 50 bytes. */
export async function overlayMtu(o: OverlayConf): Promise<number> {
  if (o.mtu) return o.mtu
  return (await findUnderlay(o.underlay ?? {})).mtu - VXLAN_OVERHEAD
}

/**
 * This host leaves the network (`network rm`): its slice is given back in
 * etcd (the lease revoked: peers drop its routes at once), the VXLAN device
 * and the state file go. etcd unreachable: the device still goes, and the
 * record stays until its TTL ends (returned as a warning).
 */
export async function leaveOverlay(o: OverlayConf): Promise<string[]> {
  const warnings: string[] = []
  await withStateLock(o.stateDir, o.name, async () => {
    const state = readState(o.stateDir, o.name)
    const publicIp = state?.publicIp ?? (await findUnderlay(o.underlay ?? {}).then((u) => u.ip, () => undefined))
    if (publicIp) {
      try {
        await releaseSlice(etcdClientOf(o), o.vni, publicIp)
      } catch (err) {
        warnings.push(`network ${JSON.stringify(o.name)}: this host's slice stays in etcd until its lease ends (${o.leaseTtl}s): ${(err as Error).message}`)
      }
    }
    await removeDevice(o.vni)
    removeState(o.stateDir, o.name)
  })
  return warnings
}

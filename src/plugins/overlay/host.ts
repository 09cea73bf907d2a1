import {CniError, CNI_ERR} from '../types.js'
import {formatCidr} from '../../kernel/ip/addr.js'
import {findUnderlay} from '../../kernel/ip/vxlan.js'
import {EtcdClient, EtcdError} from '../../sys/etcd.js'
import {type OverlayConf, VXLAN_OVERHEAD} from './config.js'
import {configureDevice, ensureDevice, syncPeers} from './dataplane.js'
import {acquireSlice} from './lease.js'
import {readState, withStateLock, writeState} from './state.js'

/**
 * This host in an overlay network, once: the device, this host's slice
 * (renewed, or leased by transaction), the VTEP address and every peer's
 * entries, under the host's lock of the network. The ADD runs it before it
 * delegates to bridge; the daemon runs it on every change etcd reports and
 * often enough to renew the slice's lease.
 */
export async function joinOverlay(o: OverlayConf): Promise<{slice: string; mtu: number; peers: number}> {
  const underlay = await findUnderlay(o.underlay ?? {}).catch((err: Error) => {
    throw new CniError(CNI_ERR.INTERNAL, `overlay: underlay: ${err.message}`)
  })
  const mtu = o.mtu || underlay.mtu - VXLAN_OVERHEAD
  const client = new EtcdClient(o.etcd)
  return withStateLock(o.stateDir, o.name, async () => {
    const dev = await ensureDevice(o.vni, underlay, mtu)
    const before = readState(o.stateDir, o.name)
    const {mine, peers} = await acquireSlice(client, {
      vni: o.vni,
      subnet: o.subnet,
      hostSubnetSize: o.hostSubnetSize,
      publicIp: underlay.ip,
      vtepMac: dev.mac,
      ttl: o.leaseTtl,
      preferred: before?.vni === o.vni ? before.slice : undefined,
    }).catch((err: unknown) => {
      // etcd unreachable or refusing: one line naming it; the caller may retry
      if (err instanceof EtcdError) throw new CniError(CNI_ERR.TRY_AGAIN_LATER, err.message)
      throw err
    })
    await configureDevice(o.vni, mine)
    await syncPeers(o.vni, peers)
    const slice = formatCidr(mine.slice)
    if (before?.slice !== slice || before.publicIp !== underlay.ip || before.vni !== o.vni) {
      writeState(o.stateDir, o.name, {vni: o.vni, slice, publicIp: underlay.ip})
    }
    return {slice, mtu, peers: peers.length}
  })
}

import type {Cidr} from '../../kernel/ip/addr.js'
import {EtcdClient, type EtcdTls} from '../../sys/etcd.js'

/**
 * An overlay network as the overlay service takes it: the typed values the
 * control plane (etcd leases, this host's state) and the data plane (the
 * VXLAN device, the peers' entries) need. The overlay plugin parses its
 * conflist entry into it (src/plugins/overlay/config.ts); the service never
 * reads a conflist. Every host of the network has the same values; what
 * differs per host (its slice, its underlay) comes from etcd and the host's
 * interfaces.
 */
export interface OverlayConf {
  /** the network's name: it names this host's state file (sys/names.ts's rule) */
  name: string
  /** etcd's endpoints */
  etcd: string[]
  /** PEM files for https endpoints */
  etcdTls?: EtcdTls
  vni: number
  subnet: Cidr
  /** the prefix length of each host's slice of the subnet */
  hostSubnetSize: number
  /** interface name or address; undefined: the interface of the default route */
  underlay?: {dev?: string; ip?: string}
  /** 0: the underlay's MTU minus the 50 bytes of VXLAN */
  mtu: number
  /** seconds a host's slice lives in etcd without renewal */
  leaseTtl: number
  /** where this host keeps its slice between runs (one JSON file per network) */
  stateDir: string
}

export const VXLAN_PORT = 4789
export const VXLAN_OVERHEAD = 50
/** The largest VNI (24 bits). */
export const MAX_VNI = 16777215
/** Where a host keeps its slices between runs, unless the network says otherwise. */
export const DEFAULT_STATE_DIR = '/var/lib/ctrnet/overlay'

/** The VXLAN device of a network: ctrnet.<vni> (at most 15 characters for any VNI). */
export function vxlanDevice(vni: number): string {
  return `ctrnet.${vni}`
}

/** A client for the network's etcd (its endpoints and TLS files). */
export function etcdClientOf(o: Pick<OverlayConf, 'etcd' | 'etcdTls'>): EtcdClient {
  return new EtcdClient(o.etcd, {tls: o.etcdTls})
}

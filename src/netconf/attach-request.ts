import {Address4, Address6} from 'ip-address'
import * as validate from '../libcni/validate.js'
import * as fields from '../plugins/fields.js'
import type {PortMapping} from '../plugins/types.js'
import {CtrnetError} from '../sys/errors.js'

/**
 * One attachment a container asks for, parsed: from `network connect`'s
 * flags (attachRequestOfFlags), from the `ctrnet/networks` and
 * `ctrnet/publish` labels (labels.ts intentOf) or from `cni add`'s flags
 * (app/cni.ts). Every value is typed and checked where it came in, with
 * the name of its source in a refusal; nothing downstream parses it again
 * (the runtime takes the RuntimeConf built from it as typed, libcni/conf.ts).
 */
export interface AttachRequest {
  network: string
  /** host ports to publish (portmap's capability) */
  publish: PortMapping[]
  /** an IPv4 address (CNI_ARGS IP=, as nerdctl) */
  ip?: string
  /** an IPv6 address (the `ips` capability) */
  ip6?: string
  /** the interface name in the container; undefined: the next free ethN */
  ifname?: string
  /** names the network's DNS answers for this container, besides its name and ids (--alias) */
  aliases: string[]
}

/** `network connect`'s flags, as oclif gives them. */
export interface AttachFlags {
  ifname?: string
  ip?: string
  ip6?: string
  publish?: string[]
  alias?: string[]
}

/** `network connect`'s flags -> the request, or one line naming the flag. */
export function attachRequestOfFlags(network: string, f: AttachFlags): AttachRequest {
  const req: AttachRequest = {network, publish: [], aliases: []}
  if (f.ip !== undefined) {
    if (f.ip.includes('/') || !Address4.isValid(f.ip)) throw new CtrnetError(`--ip ${f.ip}`, 'not an IPv4 address (give the address without a prefix length)')
    req.ip = fields.ipAddress(f.ip, '--ip')
  }
  if (f.ip6 !== undefined) {
    if (f.ip6.includes('/') || !Address6.isValid(f.ip6)) throw new CtrnetError(`--ip6 ${f.ip6}`, 'not an IPv6 address (give the address without a prefix length)')
    req.ip6 = fields.ipAddress(f.ip6, '--ip6')
  }
  if (f.ifname !== undefined) req.ifname = fields.ifName(f.ifname, '--ifname')
  req.aliases = (f.alias ?? []).map((a) => fields.dnsName(a, '--alias'))
  req.publish = (f.publish ?? []).map((p) => validate.portSpec(p, '--publish'))
  return req
}

/** A port mapping as a port spec, `[HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]` (tcp, the default, unwritten): what portSpec reads back. */
export function formatPortSpec(m: PortMapping): string {
  const host = m.hostIP ? `${m.hostIP.includes(':') ? `[${m.hostIP}]` : m.hostIP}:` : ''
  return `${host}${m.hostPort}:${m.containerPort}${m.protocol === 'tcp' ? '' : `/${m.protocol}`}`
}

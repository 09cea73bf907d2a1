import {Address4, Address6} from 'ip-address'
import type {PortMapping} from './types.js'

/**
 * Parses `[HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]` (HOSTIP may be IPv6 in
 * brackets) into a CNI portMappings entry. Ranges are not supported.
 */
export function parsePortSpec(spec: string): PortMapping {
  const bad = (why: string) => new Error(`invalid port mapping "${spec}": ${why}`)
  let rest = spec
  let protocol = 'tcp'
  const slash = rest.lastIndexOf('/')
  if (slash >= 0) {
    protocol = rest.slice(slash + 1).toLowerCase()
    rest = rest.slice(0, slash)
    if (!['tcp', 'udp', 'sctp'].includes(protocol)) throw bad(`protocol must be tcp, udp or sctp`)
  }
  let hostIP: string | undefined
  const v6 = /^\[([^\]]+)\]:(.*)$/.exec(rest)
  if (v6) {
    hostIP = v6[1]
    rest = v6[2]
    if (!Address6.isValid(hostIP)) throw bad(`"${hostIP}" is not an IPv6 address`)
  }
  const fields = rest.split(':')
  if (!v6 && fields.length === 3) {
    hostIP = fields.shift()!
    if (hostIP !== '' && !Address4.isValid(hostIP)) throw bad(`"${hostIP}" is not an IPv4 address`)
    if (hostIP === '') hostIP = undefined
  }
  if (fields.length !== 2) throw bad('expected [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]')
  const [hostPort, containerPort] = fields.map((f) => {
    if (!/^\d{1,5}$/.test(f)) throw bad(`"${f}" is not a port number`)
    const n = Number(f)
    if (n < 1 || n > 65535) throw bad(`port ${n} is out of range 1-65535`)
    return n
  })
  const m: PortMapping = {hostPort, containerPort, protocol}
  if (hostIP) m.hostIP = hostIP
  return m
}

import type {PortMapping} from '../plugins/types.js'
import {portSpec} from './validate.js'

/**
 * Parses `[HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]` (HOSTIP may be IPv6 in
 * brackets) into a CNI portMappings entry; `field` names the flag or label it
 * came from in the refusal. Ranges are not supported.
 */
export function parsePortSpec(spec: string, field = '--publish'): PortMapping {
  return portSpec(spec, field)
}

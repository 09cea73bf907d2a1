import type {PortMapping} from '../plugins/types.js'
import {validateContainerId} from './args.js'

/** What libcni calls RuntimeConf: everything about one attachment but the config. */
export interface RuntimeConf {
  containerId: string
  netns: string
  ifName: string
  args?: Array<[string, string]>
  capabilityArgs?: Record<string, unknown>
}

/**
 * A RuntimeConf built by our own edge from values it parsed (`network
 * connect`'s flags, the daemon's labels, `cni add`'s flags): the interface
 * name, CNI_ARGS and capability args are typed, in canonical form.
 */
export interface TypedRuntimeConf extends RuntimeConf {
  capabilityArgs?: {portMappings?: PortMapping[]; ips?: string[]; [cap: string]: unknown}
}

const typedConfs = new WeakSet<object>()

/**
 * Marks a runtime conf as typed: the runtime then parses its values no
 * more (validate.request); a raw one (another runtime's CNI_* environment,
 * a cache entry) is parsed in full. Only the container id, which none of
 * our edges parses, is checked here. The mark is the object's own: a copy
 * (`{...rt}`) is raw again.
 */
export function typedRuntimeConf(rt: TypedRuntimeConf): RuntimeConf {
  validateContainerId(rt.containerId)
  const out: RuntimeConf = {...rt}
  typedConfs.add(out)
  return out
}

export function isTypedRuntimeConf(rt: object): boolean {
  return typedConfs.has(rt)
}

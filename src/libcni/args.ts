import {ifNameFault} from '../kernel/tokens.js'
import {CNI_ERR, CniError} from '../plugins/types.js'
import {isNetworkName} from '../sys/names.js'
import {ifName as parseIfName} from '../plugins/fields.js'

/** Parses CNI_ARGS ("K=V;K2=V2") into ordered pairs. */
export function parseCniArgs(s: string): Array<[string, string]> {
  if (!s) return []
  return s
    .split(';')
    .filter((p) => p !== '')
    .map((pair) => {
      const i = pair.indexOf('=')
      if (i <= 0) throw new CniError(CNI_ERR.INVALID_ENV, 'invalid CNI_ARGS', `pair "${pair}" is not K=V`)
      return [pair.slice(0, i), pair.slice(i + 1)] as [string, string]
    })
}

export function formatCniArgs(args: Array<[string, string]>): string {
  return args.map(([k, v]) => `${k}=${v}`).join(';')
}

/** libcni's container id rule: the network name's (ValidateContainerID). */
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/

export function validateContainerId(id: string): void {
  if (!id) throw new CniError(CNI_ERR.INVALID_ENV, 'missing containerID')
  if (!NAME_RE.test(id)) throw new CniError(CNI_ERR.INVALID_ENV, 'invalid characters in containerID', id)
}

export function validateNetworkName(name: string): void {
  if (!name) throw new CniError(CNI_ERR.INVALID_NETCONF, 'missing network name')
  if (!isNetworkName(name)) throw new CniError(CNI_ERR.INVALID_NETCONF, 'invalid characters found in network name', name)
}

/**
 * Interface names (CNI_IFNAME), refused by the one rule set of the kernel
 * writers (kernel/tokens.ts ifNameFault) in libcni's ValidateInterfaceName
 * words for the faults libcni names; a name it faults for another reason (a
 * character outside the writers' set) in the writers' words, naming
 * CNI_IFNAME. One check: validate.request does not repeat it.
 */
export function validateIfName(name: string): void {
  const fault = ifNameFault(name)
  if (fault === undefined) return
  if (fault === 'is empty') throw new CniError(CNI_ERR.INVALID_ENV, 'interface name is empty')
  if (fault.startsWith('is longer than')) throw new CniError(CNI_ERR.INVALID_ENV, 'interface name is too long', 'interface name should be less than 16 characters')
  if (fault === "is '.' or '..'") throw new CniError(CNI_ERR.INVALID_ENV, 'interface name is . or ..')
  if (/[/:\s]/.test(name)) throw new CniError(CNI_ERR.INVALID_ENV, 'interface name contains / or : or whitespace characters', name)
  parseIfName(name, 'CNI_IFNAME', CNI_ERR.INVALID_ENV)
}

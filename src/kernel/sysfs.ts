import {existsSync, readFileSync, readdirSync} from 'node:fs'
import {ifNameFault} from './tokens.js'

/**
 * Reads of /sys/class/net for the network namespace this process runs in: no
 * process is spawned. A name that is not a valid interface name is never put
 * into a path (it reads as "no such link").
 */

const valid = (name: string): boolean => ifNameFault(name) === undefined

/** True when a link of that name exists in the current network namespace. */
export function linkExists(name: string): boolean {
  return valid(name) && existsSync(`/sys/class/net/${name}`)
}

/** A sysfs attribute of a link in the current namespace, or undefined. */
export function linkAttr(name: string, attr: string): string | undefined {
  if (!valid(name)) return undefined
  try {
    return readFileSync(`/sys/class/net/${name}/${attr}`, 'utf8').trim()
  } catch {
    return undefined
  }
}

export function linkMac(name: string): string | undefined {
  return linkAttr(name, 'address')
}

export function isBridge(name: string): boolean {
  return valid(name) && existsSync(`/sys/class/net/${name}/bridge`)
}

/** Names of the ports of a bridge (current namespace). */
export function bridgePorts(name: string): string[] {
  try {
    return readdirSync(`/sys/class/net/${name}/brif`)
  } catch {
    return []
  }
}

import {readFileSync, writeFileSync} from 'node:fs'
import {assertSysctlKey, assertSysctlValue} from './ip/batch.js'
import {UnsafeTokenError, showToken} from './tokens.js'

/**
 * Sysctls of the namespace this process runs in (the host side), through
 * /proc/sys. Keys are slash paths below /proc/sys: net/ipv4/ip_forward.
 * Container-side sysctls go through ipBatch({sysctls}) (one nsenter).
 */
export function sysctlPath(key: string): string {
  assertSysctlKey(key)
  return `/proc/sys/${key}`
}

export function readSysctl(key: string): string {
  return readFileSync(sysctlPath(key), 'utf8').trim()
}

/** Writes a value checked by assertSysctlValue (one line, no NUL, no whitespace but list keys' single spaces). */
export function writeSysctl(key: string, value: string): void {
  const path = sysctlPath(key)
  assertSysctlValue(key, value)
  writeFileSync(path, value)
}

/** Writes value unless it is already set (the reference's echo1). */
export function ensureSysctl(key: string, value: string): void {
  try {
    if (readSysctl(key) === value) return
  } catch {
    // fall through and try the write
  }
  writeSysctl(key, value)
}

/** Best effort write; returns false on error (the reference ignores these). */
export function trySysctl(key: string, value: string): boolean {
  try {
    writeSysctl(key, value)
    return true
  } catch {
    return false
  }
}

/** Dotted key (net.ipv4.ip_forward) to slash key, as the tuning plugin does. */
export function dottedToSlash(key: string): string {
  return key.replace(/\./g, '/')
}

/**
 * A dotted key (net.ipv4.conf.eth0.route_localnet) checked and turned into
 * the slash key the writers take. Dotted components cannot hold '.', so an
 * interface name with a dot must be given in slash form.
 */
export function sysctlKeyFromDotted(key: string): string {
  if (typeof key !== 'string' || !/^net(\.[A-Za-z0-9_@:+-]+)+$/.test(key)) {
    throw new UnsafeTokenError(`sysctl: invalid net sysctl key ${showToken(key)} : not of the form net.<a>.<b>...`)
  }
  const slash = dottedToSlash(key)
  assertSysctlKey(slash)
  return slash
}

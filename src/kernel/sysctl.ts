import {readFileSync, writeFileSync} from 'node:fs'
import {posix} from 'node:path'
import {run} from '../sys/exec.js'
import {nsenterArgv} from './netns.js'
import {UnsafeTokenError, assertSysctlKey, assertSysctlValue, showToken} from './tokens.js'

/**
 * Sysctls of the namespace this process runs in (the host side), through
 * /proc/sys. Keys are slash paths below /proc/sys: net/ipv4/ip_forward.
 * Container-side sysctls are written through ipBatch({sysctls}) (one nsenter)
 * and read with readSysctlsIn.
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

/**
 * The key of a slash path below /proc/sys/net/ (net/ipv4/conf/eth0/rp_filter)
 * after resolving '.', '..' and repeated slashes, or undefined when it leaves
 * net/ or is no valid sysctl key.
 */
export function netSysctlKeyOf(path: string): string | undefined {
  const file = posix.join('/proc/sys', path)
  if (!file.startsWith('/proc/sys/net/')) return undefined
  const rel = file.slice('/proc/sys/'.length)
  try {
    assertSysctlKey(rel)
  } catch {
    return undefined
  }
  return rel
}

/**
 * Reads sysctls inside the network namespace at netnsPath with one process
 * (nsenter -> cat): the values in the order of keys, one per line as cat
 * printed them. Throws when a key cannot be read.
 */
export async function readSysctlsIn(netnsPath: string, keys: string[]): Promise<string[]> {
  const argv = nsenterArgv(netnsPath, ['cat', ...keys.map(sysctlPath)])
  const r = await run(argv[0], argv.slice(1))
  return r.stdout.split('\n')
}

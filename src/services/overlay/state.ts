import {mkdirSync, readFileSync, rmSync} from 'node:fs'
import {join} from 'node:path'
import {writeFileAtomic} from '../../sys/atomic.js'
import {withLock} from '../../sys/flock.js'
import {formatCidr, parseCidr} from '../../kernel/ip/addr.js'

/**
 * What a host remembers of its overlay networks between runs (flannel's
 * subnet.env): per network, the VNI and the slice it last held, so DEL works
 * without etcd and a host whose etcd record expired asks for the same slice.
 */
export interface HostState {
  vni: number
  slice: string
  publicIp: string
}

function file(dir: string, network: string): string {
  return join(dir, `${network}.json`)
}

export function readState(dir: string, network: string): HostState | undefined {
  try {
    const s = JSON.parse(readFileSync(file(dir, network), 'utf8')) as HostState
    return {vni: Number(s.vni), slice: formatCidr(parseCidr(String(s.slice))), publicIp: String(s.publicIp)}
  } catch {
    return undefined
  }
}

export function writeState(dir: string, network: string, s: HostState): void {
  mkdirSync(dir, {recursive: true, mode: 0o755})
  writeFileAtomic(file(dir, network), JSON.stringify(s) + '\n', 0o644)
}

export function removeState(dir: string, network: string): void {
  rmSync(file(dir, network), {force: true})
}

/** Runs fn under this host's lock of the network (one lease at a time per host). */
export async function withStateLock<T>(dir: string, network: string, fn: () => Promise<T>): Promise<T> {
  mkdirSync(dir, {recursive: true, mode: 0o755})
  return withLock(join(dir, `${network}.lock`), fn, {timeoutMs: 30_000})
}

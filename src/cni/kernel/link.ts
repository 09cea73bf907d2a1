import {existsSync} from 'node:fs'
import {run} from '../../lib/exec.js'

/** True when a link of that name exists in the current network namespace. */
export function linkExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`)
}

/** Deletes a link in the current network namespace; no error when it is absent. */
export async function deleteLinkIfExists(name: string): Promise<boolean> {
  const res = await run('ip', ['link', 'del', 'dev', name], {allowFailure: true})
  if (res.code === 0) return true
  if (/cannot find device|does not exist/i.test(res.stderr)) return false
  throw new Error(`ip link del ${name}: ${res.stderr.trim()}`)
}

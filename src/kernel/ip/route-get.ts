import {Address4, Address6} from 'ip-address'
import {run} from '../../sys/exec.js'

/**
 * `ip route get <ip>`: the device this (host) namespace routes an address
 * through, as the reference's getRoutableHostIF finds it; undefined when
 * there is no route, `ip` fails, or the argument is not an IP address.
 */
export async function routeGetDev(ip: string): Promise<string | undefined> {
  if (!Address4.isValid(ip) && !Address6.isValid(ip)) return undefined
  const res = await run('ip', ['-j', 'route', 'get', ip], {allowFailure: true})
  if (res.code !== 0) return undefined
  try {
    const routes = JSON.parse(res.stdout) as Array<{dev?: string}>
    return routes.find((r) => r.dev)?.dev
  } catch {
    return undefined
  }
}

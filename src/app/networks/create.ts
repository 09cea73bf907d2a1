import {existsSync} from 'node:fs'
import {type CreatedNetwork, createNetworkLocked} from '../../netconf/create.js'
import {type CreateOptions, DHCP_SOCKET, defaultCreateOptions} from '../../netconf/render.js'
import type {Settings} from '../settings.js'
import {type Warn, skipper} from './common.js'

/** `network create` (nerdctl's create.go): render, validate and write the conflist under the store lock. */
export async function createNetwork(
  s: Pick<Settings, 'confDir' | 'namespace'>,
  name: string,
  options: Partial<Omit<CreateOptions, 'name'>>,
  {ignore = false, warn}: {ignore?: boolean; warn: Warn},
): Promise<CreatedNetwork> {
  const opts = defaultCreateOptions(name, options)
  const res = await createNetworkLocked(s.confDir, s.namespace, opts, {ignoreExisting: ignore, onSkip: skipper(warn)})
  for (const w of res.warnings) warn(w)
  if (res.created && opts.ipamDriver === 'dhcp' && !existsSync(DHCP_SOCKET)) {
    warn(`cannot access dhcp socket ${JSON.stringify(DHCP_SOCKET)} (hint: start the CNI dhcp plugin as a daemon: dhcp daemon --socketpath=${DHCP_SOCKET} &)`)
  }
  return res
}

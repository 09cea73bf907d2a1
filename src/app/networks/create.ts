import {existsSync} from 'node:fs'
import {type CreatedNetwork, createNetworkLocked} from '../../netconf/create.js'
import {type CreateOptions, DHCP_SOCKET, defaultCreateOptions, renderNetwork} from '../../netconf/render.js'
import {registerNetwork} from '../../services/overlay/lease.js'
import {etcdClientOf} from '../../services/overlay/config.js'
import {overlayNetworkOf} from '../../plugins/overlay/config.js'
import {CtrnetError, errorMessage} from '../../sys/errors.js'
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
  if (opts.driver === 'overlay') await registerOverlay(opts)
  const res = await createNetworkLocked(s.confDir, s.namespace, opts, {ignoreExisting: ignore, onSkip: skipper(warn)})
  for (const w of res.warnings) warn(w)
  if (res.created && opts.ipamDriver === 'dhcp' && !existsSync(DHCP_SOCKET)) {
    warn(`cannot access dhcp socket ${JSON.stringify(DHCP_SOCKET)} (hint: start the CNI dhcp plugin as a daemon: dhcp daemon --socketpath=${DHCP_SOCKET} &)`)
  }
  return res
}

/**
 * An overlay network is shared through etcd: its options are checked first
 * (the render, which writes nothing), then etcd must answer and agree on the
 * VNI's subnet and slice size (recorded there by the first host).
 */
async function registerOverlay(opts: CreateOptions): Promise<void> {
  const what = `network create ${opts.name}`
  const {conf} = renderNetwork(opts, {usedSubnets: []})
  try {
    const o = overlayNetworkOf(conf)!
    await registerNetwork(etcdClientOf(o), o.vni, o.subnet, o.hostSubnetSize)
  } catch (err) {
    throw new CtrnetError(what, errorMessage(err))
  }
}

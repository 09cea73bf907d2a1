import type {Settings} from '../app/settings.js'
import type {GlobalFlags} from './base-command.js'
import {CtrnetError} from '../sys/errors.js'
import {showToken} from '../kernel/tokens.js'

/**
 * The one reader of ctrnet's configuration: the global flags (declared in
 * base-command.ts, with nerdctl's names and environment variables), --cni-mode
 * and the environment variables ctrnet itself honours become a Settings
 * (src/app/settings.ts). Nothing below src/cli/ reads the environment for
 * configuration.
 */

/** The settings of any command, from its global flags and the environment. */
export function settings(flags: GlobalFlags, env: NodeJS.ProcessEnv = process.env): Settings {
  return {
    confDir: flags['cni-netconfpath'],
    cniPath: flags['cni-path'].split(':').filter(Boolean),
    cacheDir: flags['cni-cachedir'],
    namespace: flags.namespace,
    address: flags.address,
    // a value that is not a positive number is ignored, as it always was
    containerdTimeoutMs: Number(env.CTRNET_CONTAINERD_TIMEOUT_MS) || undefined,
  }
}

/** The settings of a command that changes the firewall without a chain (`network rm|prune`): also CTRNET_IPTABLES_LOCK. */
export function firewallSettings(flags: GlobalFlags, env: NodeJS.ProcessEnv = process.env): Settings {
  return {...settings(flags, env), iptablesLockPath: env.CTRNET_IPTABLES_LOCK || undefined}
}

/**
 * The settings of a command that runs plugin chains (`cni add|check|del|gc`,
 * `network connect|disconnect|gc`): also --cni-mode and the runtime's
 * environment variables, checked here, before anything is touched.
 */
export function runtimeSettings(flags: GlobalFlags & {'cni-mode': string}, env: NodeJS.ProcessEnv = process.env): Settings {
  const mode = flags['cni-mode']
  if (mode !== 'embedded' && mode !== 'exec') throw new CtrnetError('--cni-mode', `must be embedded or exec, not "${mode}"`)
  const t = env.CTRNET_PLUGIN_TIMEOUT_MS
  const pluginTimeoutMs = t ? Number(t) : undefined
  if (pluginTimeoutMs !== undefined && !(Number.isInteger(pluginTimeoutMs) && pluginTimeoutMs > 0)) {
    throw new CtrnetError('CTRNET_PLUGIN_TIMEOUT_MS', `must be a positive whole number of milliseconds, not "${t}"`)
  }
  return {...settings(flags, env), mode, pluginTimeoutMs, iptablesLockPath: env.CTRNET_IPTABLES_LOCK || undefined}
}

/** The CNI protocol's environment, as a runtime that execs `ctrnet cni plugin` sets it. */
export interface CniPluginEnv {
  command: string
  containerId: string
  netns: string
  ifName: string
  cniArgs: string
  cniPath: string[]
}

export function cniPluginEnv(env: NodeJS.ProcessEnv = process.env): CniPluginEnv {
  return {
    command: env.CNI_COMMAND ?? '',
    containerId: env.CNI_CONTAINERID ?? '',
    netns: env.CNI_NETNS ?? '',
    ifName: env.CNI_IFNAME ?? '',
    cniArgs: env.CNI_ARGS ?? '',
    cniPath: (env.CNI_PATH ?? '').split(':').filter(Boolean),
  }
}

/** The values of `network create --firewall-backend` (netconf/firewall-backend.ts). */
export type FirewallBackendChoice = 'auto' | 'iptables' | 'nftables'

/**
 * `network create --firewall-backend`: the flag, else CTRNET_FIREWALL_BACKEND,
 * else auto; checked here, naming where the value came from.
 */
export function firewallBackendChoice(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): FirewallBackendChoice {
  const [what, v] = flag !== undefined ? ['--firewall-backend', flag] : ['CTRNET_FIREWALL_BACKEND', env.CTRNET_FIREWALL_BACKEND || 'auto']
  if (v !== 'auto' && v !== 'iptables' && v !== 'nftables') throw new CtrnetError(what, `must be auto, iptables or nftables, not ${showToken(v)}`)
  return v
}

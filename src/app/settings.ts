import type {CniMode} from '../libcni/runtime.js'

/**
 * ctrnet's settings: the global flags, --cni-mode and the environment
 * variables ctrnet honours, as plain values. src/cli/settings.ts makes it
 * (the only place that reads the environment for configuration); the use
 * cases take it, or the Pick of it they need. It is declared here, not in
 * cli/, because app/ may not import the layer above it.
 */
export interface Settings {
  /** --cni-netconfpath (NETCONFPATH): the conflist directory */
  confDir: string
  /** --cni-path (CNI_PATH): plugin binary directories */
  cniPath: string[]
  /** --cni-cachedir: the CNI result cache */
  cacheDir: string
  /** --namespace (CONTAINERD_NAMESPACE) */
  namespace: string
  /** --address (CONTAINERD_ADDRESS): containerd's socket */
  address: string
  /** CTRNET_CONTAINERD_TIMEOUT_MS: deadline of each containerd call (unset: the client's default) */
  containerdTimeoutMs?: number
  /** --cni-mode (CTRNET_CNI_MODE), for the commands that run plugin chains */
  mode?: CniMode
  /** CTRNET_PLUGIN_TIMEOUT_MS: how long an external plugin may run (unset: the runtime's default) */
  pluginTimeoutMs?: number
  /** CTRNET_IPTABLES_LOCK: the xtables lock file (unset: the kernel layer's default) */
  iptablesLockPath?: string
}

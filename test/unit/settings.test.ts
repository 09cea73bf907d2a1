import {describe, expect, it} from 'vitest'
import {runtimeSettings, settings} from '../../src/cli/settings.js'

const flags = {
  'cni-netconfpath': '/etc/cni/net.d',
  'cni-path': '/opt/cni/bin::/usr/lib/cni',
  'cni-cachedir': '/var/lib/cni',
  namespace: 'default',
  address: '/run/containerd/containerd.sock',
}

describe('settings from flags and environment', () => {
  it('maps the global flags; CNI_PATH is split on colons', () => {
    expect(settings(flags, {})).toEqual({
      confDir: '/etc/cni/net.d',
      cniPath: ['/opt/cni/bin', '/usr/lib/cni'],
      cacheDir: '/var/lib/cni',
      namespace: 'default',
      address: '/run/containerd/containerd.sock',
      containerdTimeoutMs: undefined,
    })
  })

  it('reads CTRNET_CONTAINERD_TIMEOUT_MS; a value that is not a number leaves the default', () => {
    expect(settings(flags, {CTRNET_CONTAINERD_TIMEOUT_MS: '2500'}).containerdTimeoutMs).toBe(2500)
    expect(settings(flags, {CTRNET_CONTAINERD_TIMEOUT_MS: 'soon'}).containerdTimeoutMs).toBeUndefined()
  })

  it('does not read the runtime variables for commands that run no plugin', () => {
    const s = settings(flags, {CTRNET_PLUGIN_TIMEOUT_MS: 'soon', CTRNET_IPTABLES_LOCK: '/tmp/x.lock'})
    expect(s.pluginTimeoutMs).toBeUndefined()
    expect(s.iptablesLockPath).toBeUndefined()
  })

  it('adds --cni-mode, CTRNET_PLUGIN_TIMEOUT_MS and CTRNET_IPTABLES_LOCK for the commands that run chains', () => {
    const s = runtimeSettings({...flags, 'cni-mode': 'exec'}, {CTRNET_PLUGIN_TIMEOUT_MS: '700', CTRNET_IPTABLES_LOCK: '/tmp/x.lock'})
    expect(s.mode).toBe('exec')
    expect(s.pluginTimeoutMs).toBe(700)
    expect(s.iptablesLockPath).toBe('/tmp/x.lock')
    const d = runtimeSettings({...flags, 'cni-mode': 'embedded'}, {CTRNET_PLUGIN_TIMEOUT_MS: '', CTRNET_IPTABLES_LOCK: ''})
    expect(d.pluginTimeoutMs).toBeUndefined()
    expect(d.iptablesLockPath).toBeUndefined()
  })

  it('refuses a bad CTRNET_PLUGIN_TIMEOUT_MS or --cni-mode with one line', () => {
    for (const t of ['soon', '-5', '0', '1.5']) {
      expect(() => runtimeSettings({...flags, 'cni-mode': 'embedded'}, {CTRNET_PLUGIN_TIMEOUT_MS: t})).toThrow(
        `CTRNET_PLUGIN_TIMEOUT_MS : must be a positive whole number of milliseconds, not "${t}"`,
      )
    }
    expect(() => runtimeSettings({...flags, 'cni-mode': 'fork'}, {})).toThrow('--cni-mode : must be embedded or exec, not "fork"')
  })
})

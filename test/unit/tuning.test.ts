/** tuning's config parsing and sysctl keys (pure; the kernel side runs in the e2e tests). */
import {describe, expect, it} from 'vitest'
import {parseTuningConf, sysctlKey} from '../../src/plugins/tuning/index.js'
import {netSysctlKeyOf} from '../../src/kernel/sysctl.js'
import type {PluginRequest} from '../../src/plugins/types.js'

const req = (config: Record<string, unknown>, args: Array<[string, string]> = []): PluginRequest =>
  ({command: 'ADD', containerId: 'c1', netns: '/var/run/netns/x', ifName: 'eth0', cniArgs: '', args, cniPath: [], config: {type: 'tuning', name: 'n', cniVersion: '1.0.0', ...config}, invokeIpam: async () => undefined}) as PluginRequest

describe('tuning sysctl keys', () => {
  it('dotted keys become slash keys under net/, IFNAME replaced', () => {
    expect(sysctlKey('net.ipv4.conf.IFNAME.rp_filter', 'eth0')).toBe('net/ipv4/conf/eth0/rp_filter')
    // every '.' is a separator, as in the reference (an interface name with a dot cannot be named)
    expect(sysctlKey('net/ipv4/conf/eth0.100/arp_ignore', 'eth0')).toBe('net/ipv4/conf/eth0/100/arp_ignore')
    // '..' is two separators, not a parent: the key stays under net/
    expect(sysctlKey('net/../kernel/pid_max', 'eth0')).toBe('net/kernel/pid_max')
  })

  it('refuses keys outside net/', () => {
    for (const k of ['kernel.pid_max', '/etc/passwd', 'net', 'net.ipv4.-x']) {
      expect(() => sysctlKey(k, 'eth0')).toThrow(`invalid net sysctl key: "${k}"`)
    }
  })

  it('netSysctlKeyOf resolves the path first', () => {
    expect(netSysctlKeyOf('net//ipv4/./ip_forward')).toBe('net/ipv4/ip_forward')
    expect(netSysctlKeyOf('net/ipv4/../../kernel/x')).toBeUndefined()
  })
})

describe('tuning config', () => {
  it('args.cni and runtimeConfig override the config; the MAC is normalized', () => {
    const c = parseTuningConf(req({mac: '02:00:00:00:00:01', mtu: 1400, runtimeConfig: {mac: 'C2:00:00:00:00:02'}, args: {cni: {promisc: true, sysctl: {'net.ipv4.conf.eth0.rp_filter': 2}}}}))
    expect(c).toEqual({dataDir: '/run/cni/tuning', sysctl: {'net.ipv4.conf.eth0.rp_filter': '2'}, mac: 'c2:00:00:00:00:02', promisc: true, mtu: 1400, allmulti: undefined})
  })

  it('refuses a bad MAC, a negative MTU and non-string sysctl values', () => {
    expect(() => parseTuningConf(req({mac: 'nope'}))).toThrow('invalid args nope for MAC addr')
    expect(() => parseTuningConf(req({mtu: -1}))).toThrow('invalid mtu -1')
    expect(() => parseTuningConf(req({sysctl: {'net.ipv4.ip_forward': 1}}))).toThrow('failed to load netconf: sysctl net.ipv4.ip_forward must be a string')
  })
})

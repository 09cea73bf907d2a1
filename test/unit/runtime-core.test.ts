import {describe, expect, it} from 'vitest'
import {parseCniArgs, validateIfName} from '../../src/libcni/args.js'
import {portSpec} from '../../src/libcni/validate.js'
import {resultAsVersion, toInternalResult, compareVersions} from '../../src/libcni/version.js'
import {defaultContainerId} from '../../src/app/cni.js'

const parsePortSpec = (spec: string) => portSpec(spec, '--publish')

describe('CNI_ARGS', () => {
  it('parses ordered pairs, values may hold =', () => {
    expect(parseCniArgs('IgnoreUnknown=1;IP=10.4.1.9;K=a=b')).toEqual([
      ['IgnoreUnknown', '1'],
      ['IP', '10.4.1.9'],
      ['K', 'a=b'],
    ])
    expect(parseCniArgs('')).toEqual([])
  })
  it('rejects a pair without =', () => {
    expect(() => parseCniArgs('IgnoreUnknown')).toThrow(/not K=V/)
  })
})

describe('interface names', () => {
  it.each(['', '.', '..', 'a/b', 'a:b', 'a b', 'x'.repeat(16)])('rejects %j', (n) => {
    expect(() => validateIfName(n)).toThrow()
  })
  it('accepts eth0 and a 15-char name', () => {
    validateIfName('eth0')
    validateIfName('x'.repeat(15))
  })
})

describe('port specs', () => {
  it('parses the forms docker and nerdctl accept', () => {
    expect(parsePortSpec('8080:80')).toEqual({hostPort: 8080, containerPort: 80, protocol: 'tcp'})
    expect(parsePortSpec('8080:80/udp')).toEqual({hostPort: 8080, containerPort: 80, protocol: 'udp'})
    expect(parsePortSpec('127.0.0.1:8080:80/tcp')).toEqual({hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1'})
    expect(parsePortSpec('[::1]:8080:80')).toEqual({hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '::1'})
  })
  it.each(['80', '0:80', '70000:80', 'a:80', '1.2.3:80:80', '8080:80/icmp', '[zz]:1:2'])('rejects %j', (s) => {
    expect(() => parsePortSpec(s)).toThrow(/invalid --publish: /)
  })
})

describe('result versions', () => {
  const v1 = {
    cniVersion: '1.0.0',
    interfaces: [{name: 'eth0', sandbox: '/var/run/netns/x'}],
    ips: [
      {address: '10.4.1.2/24', gateway: '10.4.1.1', interface: 0},
      {address: 'fd00::2/64', interface: 0},
    ],
    routes: [{dst: '0.0.0.0/0'}],
    dns: {},
  }
  it('adds ips[].version for 0.4.0 and drops it again', () => {
    const old = resultAsVersion(v1, '0.4.0')
    expect(old.cniVersion).toBe('0.4.0')
    expect(old.ips!.map((i) => (i as unknown as {version: string}).version)).toEqual(['4', '6'])
    const back = toInternalResult(JSON.parse(JSON.stringify(old)))
    expect(back.ips).toEqual(v1.ips)
  })
  it('rejects garbage', () => {
    expect(() => toInternalResult('x')).toThrow(/decode/)
    expect(() => toInternalResult({interfaces: []})).toThrow(/cniVersion/)
    expect(() => toInternalResult({cniVersion: '1.0.0', ips: 'x'})).toThrow(/not a list/)
    expect(() => toInternalResult({cniVersion: '0.2.0'})).toThrow(/older/)
  })
  it('compares versions numerically', () => {
    expect(compareVersions('0.10.0', '0.4.0')).toBeGreaterThan(0)
    expect(compareVersions('1.0.0', '1.0.0')).toBe(0)
  })
})

describe('default container id', () => {
  it('is cnitool\'s: "cnitool-" + 20 hex of sha512(netns path)', () => {
    // sha512("/var/run/netns/demo") starts with these 20 hex digits
    expect(defaultContainerId('/var/run/netns/demo')).toMatch(/^cnitool-[0-9a-f]{20}$/)
    expect(defaultContainerId('/var/run/netns/demo')).toBe(defaultContainerId('/var/run/netns/demo'))
  })
})

import {describe, expect, it} from 'vitest'
import {defaultCreateOptions, renderNetwork, type CreateOptions} from '../../src/netconf/render.js'
import {validateConflist} from '../../src/netconf/schema.js'
import {parseCidr} from '../../src/netconf/subnet.js'
import {CtrnetError, formatError} from '../../src/sys/errors.js'

const used = ['10.244.0.0/16', '192.168.77.0/24'].map((s) => parseCidr(s)!)

function message(name: string, over: Partial<CreateOptions> = {}): string {
  try {
    renderNetwork(defaultCreateOptions(name, over), {usedSubnets: used, usedBridgeNames: new Map([['br-taken', 'other']])})
  } catch (err) {
    expect(err).toBeInstanceOf(CtrnetError)
    const line = formatError(err)
    expect(line).not.toContain('\n')
    return line
  }
  throw new Error('no error')
}

describe('create validation messages (one line each)', () => {
  it.each(['-x', 'a', '../evil', 'a/b', 'a b', '', '.hidden', 'x\ny', 'é1'])('invalid name %j', (name) => {
    expect(message(name)).toBe(
      `ctrnet: network create : invalid network name ${JSON.stringify(name)}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$ (at least 2 characters)`,
    )
  })
  it('accepts the names nerdctl accepts', () => {
    for (const n of ['ab', 'A1', 'my_net.v2-x', '0x']) expect(() => renderNetwork(defaultCreateOptions(n), {usedSubnets: []})).not.toThrow()
  })
  it('host bits: suggests the network', () => {
    expect(message('n1', {subnets: ['10.245.0.1/16']})).toBe(
      'ctrnet: network create n1 : subnet 10.245.0.1/16 has host bits set; maybe you meant 10.245.0.0/16?',
    )
    expect(message('n1', {ipv6: true, subnets: ['fd00:9::1/64']})).toMatch(/maybe you meant fd00:9::\/64\?$/)
  })
  it('invalid CIDR', () => {
    expect(message('n1', {subnets: ['10.1.0.0/33']})).toMatch(/failed to parse subnet "10.1.0.0\/33"/)
    expect(message('n1', {subnets: ['banana']})).toMatch(/failed to parse subnet "banana"/)
  })
  it('gateway outside its subnet, unparsable gateway', () => {
    expect(message('n1', {subnets: ['10.50.0.0/16'], gateways: ['10.51.0.1']})).toBe(
      'ctrnet: network create n1 : no matching subnet for gateway "10.51.0.1"',
    )
    expect(message('n1', {subnets: ['10.50.0.0/16'], gateways: ['nope']})).toMatch(/failed to parse gateway "nope"/)
    expect(message('n1', {subnets: ['10.50.0.0/16', '10.51.0.0/16'], gateways: ['10.50.0.9', '10.50.0.10']})).toMatch(
      /no matching subnet for gateway "10.50.0.10"/,
    )
  })
  it('ip-range outside or larger than its subnet', () => {
    expect(message('n1', {subnets: ['10.50.0.0/16'], ipRanges: ['10.60.0.0/24']})).toMatch(/no matching subnet for ip-range "10.60.0.0\/24"/)
    expect(message('n1', {subnets: ['10.50.0.0/24'], ipRanges: ['10.50.0.0/16']})).toMatch(
      /no matching subnet "10.50.0.0\/24" for ip-range "10.50.0.0\/16"/,
    )
    expect(message('n1', {subnets: ['10.50.0.0/16'], ipRanges: ['10.50.0.0']})).toMatch(/failed to parse ip-range/)
  })
  it('gateway / ip-range without subnet', () => {
    const why = 'cannot set gateway or ip-range without subnet, specify --subnet manually'
    expect(message('n1', {gateways: ['10.4.1.1']})).toBe(`ctrnet: network create n1 : ${why}`)
    expect(message('n1', {ipRanges: ['10.4.1.0/25']})).toBe(`ctrnet: network create n1 : ${why}`)
  })
  it('overlapping subnet, including with another subnet of the same create', () => {
    expect(message('n1', {subnets: ['10.244.3.0/24']})).toBe(
      'ctrnet: network create n1 : subnet 10.244.3.0/24 overlaps with other one on this address space (10.244.0.0/16)',
    )
    expect(message('n1', {subnets: ['10.70.0.0/16', '10.70.1.0/24']})).toMatch(/overlaps/)
  })
  it('unknown driver, option, ipam driver', () => {
    expect(message('n1', {driver: 'ipsec'})).toBe('ctrnet: network create n1 : unsupported cni driver "ipsec" (use bridge, macvlan, ipvlan or overlay)')
    expect(message('n1', {options: ['foo=bar']})).toBe('ctrnet: network create n1 : unsupported "bridge" network option "foo"')
    expect(message('n1', {driver: 'macvlan', options: ['icc=false']})).toBe('ctrnet: network create n1 : unsupported "macvlan" network option "icc"')
    expect(message('n1', {driver: 'macvlan', options: ['ipvlan_mode=l2']})).toMatch(/unsupported "macvlan" network option "ipvlan_mode"/)
    expect(message('n1', {driver: 'macvlan', options: ['mode=vepa']})).toMatch(/unknown macvlan mode "vepa"/)
    expect(message('n1', {driver: 'ipvlan', options: ['mode=l3s']})).toMatch(/unknown ipvlan mode "l3s"/)
    expect(message('n1', {ipamDriver: 'static'})).toMatch(/unsupported ipam driver "static"/)
  })
  it('bad option values', () => {
    expect(message('n1', {options: ['mtu=abc']})).toMatch(/strconv.Atoi: parsing "abc": invalid syntax/)
    expect(message('n1', {options: ['mtu=-1']})).toMatch(/mtu -1 is less than zero/)
    expect(message('n1', {options: ['ip-masq=maybe']})).toMatch(/ParseBool: parsing "maybe"/)
    expect(message('n1', {options: ['com.docker.network.bridge.name=this-is-too-long0']})).toMatch(/invalid -o com.docker.network.bridge.name: "this-is-too-long0" is not an interface name/)
    expect(message('n1', {options: ['com.docker.network.bridge.name=a/b']})).toMatch(/invalid -o com.docker.network.bridge.name: "a\/b" is not an interface name/)
    expect(message('n1', {options: ['com.docker.network.bridge.name=br-taken']})).toMatch(/bridge "br-taken" is already used by network "other"/)
    expect(message('n1', {ipamDriver: 'dhcp', ipamOptions: ['x=notjson']})).toMatch(/unparsable ipam option x "notjson"/)
    expect(message('n1', {ipamDriver: 'dhcp', ipamOptions: ['x={"type":"other"}']})).toMatch(/ipam option must have a type \(provide or request\)/)
  })
  it('address families', () => {
    expect(message('n1', {ipv4: false})).toMatch(/IPv4 or IPv6 must be enabled/)
    expect(message('n1', {ipv4: false, ipv6: true})).toMatch(/IPv6-only network requires an IPv6 subnet/)
    expect(message('n1', {ipv4: false, ipv6: true, subnets: ['10.80.0.0/16']})).toMatch(/--ipv4=false conflicts with an IPv4 subnet/)
    expect(message('n1', {subnets: ['fd00:5::/64'], gateways: ['fd00:5::1']})).toMatch(/no matching subnet for gateway "fd00:5::1" \(IPv6 needs --ipv6\)/)
  })
})

describe('schema (ajv) of what we write', () => {
  it('accepts every rendered variant', async () => {
    const variants: Array<Partial<CreateOptions>> = [
      {},
      {internal: true},
      {ipv6: true, subnets: ['fd00:6::/64']},
      {options: ['mtu=1300', 'ip-masq=false'], labels: ['a=b']},
      {driver: 'macvlan', options: ['parent=eth0']},
      {driver: 'ipvlan', options: ['mode=l3'], ipamDriver: 'dhcp'},
    ]
    for (const v of variants) await validateConflist('t', renderNetwork(defaultCreateOptions('ok', v), {usedSubnets: []}).conf)
  })
  it('rejects a conflist we would never write', async () => {
    const good = renderNetwork(defaultCreateOptions('ok'), {usedSubnets: []}).conf
    const bad = structuredClone(good) as Record<string, unknown> & {plugins: Array<Record<string, unknown>>}
    bad.plugins[0]!.bridge = 'much-too-long-bridge-name'
    await expect(validateConflist('network create ok', bad)).rejects.toThrow(/network create ok : refusing to write an invalid conflist: \/plugins/)
    await expect(validateConflist('t', {...good, nerdctlID: 'xyz'})).rejects.toThrow(/nerdctlID/)
    await expect(validateConflist('t', {...good, plugins: [good.plugins[1], good.plugins[0]]})).rejects.toThrow(/invalid conflist/)
    await expect(validateConflist('t', {...good, extra: 1})).rejects.toThrow(/invalid conflist/)
  })
})

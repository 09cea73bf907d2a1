import {describe, expect, it} from 'vitest'
import {defaultBridgeOptions, defaultCreateOptions, goJson, networkId, renderNetwork, type CreateOptions} from '../../src/netconf/render.js'
import {parseCidr, type Cidr} from '../../src/netconf/subnet.js'
import {DEFAULT_BRIDGE_FILE, FOO} from './nerdctl-files.js'

const NO_USED: Cidr[] = []
const render = (name: string, over: Partial<CreateOptions> = {}, used: Cidr[] = NO_USED) =>
  renderNetwork(defaultCreateOptions(name, over), {usedSubnets: used})
const plugins = (name: string, over: Partial<CreateOptions> = {}, used?: Cidr[]) => render(name, over, used).conf.plugins as Array<Record<string, unknown>>
const ipam = (name: string, over: Partial<CreateOptions> = {}, used?: Cidr[]) => plugins(name, over, used)[0]!.ipam as Record<string, unknown>

describe('renderNetwork (nerdctl v2.3 conflist)', () => {
  it('writes the exact file for a plain create, no trailing newline', () => {
    const r = render('foo')
    expect(r.text).toBe(FOO)
    expect(r.id).toBe(networkId('foo'))
    expect(r.warnings).toEqual([])
  })

  it('writes the exact default bridge network', () => {
    expect(renderNetwork(defaultBridgeOptions(), {usedSubnets: []}).text).toBe(DEFAULT_BRIDGE_FILE)
  })

  it('network ID is sha256 of the name; bridge of "bridge" is nerdctl0', () => {
    expect(networkId('bridge')).toBe('17f29b073143d8cd97b5bbe492bdeffec1c5fee55cc1fe2112c8b9335f8b6121')
    expect(plugins('bridge', {subnets: ['10.4.0.0/24']})[0]!.bridge).toBe('nerdctl0')
  })

  it('skips used subnets when allocating', () => {
    const all = ['0.0.0.0/1', '128.0.0.0/1'].map((c) => parseCidr(c)!)
    expect(() => render('x1', {}, all)).toThrow(/could not find free subnet/)
    expect(ipam('x1', {}, [parseCidr('10.0.0.0/8')!]).ranges).toEqual([[{gateway: '11.0.0.1', subnet: '11.0.0.0/24'}]])
    const used2 = ['10.4.1.0/24', '10.4.2.128/25'].map((c) => parseCidr(c)!)
    expect(ipam('x1', {}, used2).ranges).toEqual([[{gateway: '10.4.3.1', subnet: '10.4.3.0/24'}]])
  })

  it('sorts labels, later duplicates win, `k` means k=""; HTML characters escaped as Go does', () => {
    const r = render('lab', {labels: ['z=1', 'a=<&>', 'k', 'z=2']})
    expect(r.conf.nerdctlLabels).toEqual({a: '<&>', k: '', z: '2'})
    expect(Object.keys(r.conf.nerdctlLabels as object)).toEqual(['a', 'k', 'z'])
    expect(r.text).toContain('"a": "\\u003c\\u0026\\u003e"')
    expect(Object.keys(r.conf)).toEqual(['cniVersion', 'name', 'nerdctlID', 'nerdctlLabels', 'plugins'])
  })

  it('--subnet/--gateway/--ip-range: gateway and range go with the subnet containing them', () => {
    const i = ipam('gw', {subnets: ['10.244.0.0/16'], gateways: ['10.244.0.254'], ipRanges: ['10.244.1.0/24']})
    expect(JSON.stringify(i)).toBe(
      '{"ranges":[[{"gateway":"10.244.0.254","ipRange":"10.244.1.0/24","rangeEnd":"10.244.1.255","rangeStart":"10.244.1.1","subnet":"10.244.0.0/16"}]],"routes":[{"dst":"0.0.0.0/0"}],"type":"host-local"}',
    )
  })

  it('dual stack: v6 range first as given, gateways paired by containment, capabilities ips, only the v4 default route', () => {
    const p = plugins('dual', {ipv6: true, subnets: ['fd00:1::/64', '10.9.0.0/16'], gateways: ['10.9.0.9', 'fd00:1::fe'], ipRanges: ['10.9.8.0/24']})
    expect(p[0]!.capabilities).toEqual({ips: true})
    expect(p[0]!.ipam).toEqual({
      ranges: [
        [{gateway: 'fd00:1::fe', subnet: 'fd00:1::/64'}],
        [{gateway: '10.9.0.9', ipRange: '10.9.8.0/24', rangeEnd: '10.9.8.255', rangeStart: '10.9.8.1', subnet: '10.9.0.0/16'}],
      ],
      routes: [{dst: '0.0.0.0/0'}],
      type: 'host-local',
    })
  })

  it('--ipv6 with only a v6 subnet adds an automatic IPv4 range after it', () => {
    expect(ipam('v6', {ipv6: true, subnets: ['fd00:2::/64']}).ranges).toEqual([
      [{gateway: 'fd00:2::1', subnet: 'fd00:2::/64'}],
      [{gateway: '10.4.1.1', subnet: '10.4.1.0/24'}],
    ])
  })

  it('--ipv4=false --ipv6: IPv6 only, default route ::/0', () => {
    expect(ipam('v6only', {ipv4: false, ipv6: true, subnets: ['fd00:3::/64']})).toEqual({
      ranges: [[{gateway: 'fd00:3::1', subnet: 'fd00:3::/64'}]],
      routes: [{dst: '::/0'}],
      type: 'host-local',
    })
  })

  it('an IPv6 subnet without --ipv6 is ignored (as nerdctl) with a warning', () => {
    const r = render('nov6', {subnets: ['fd00:4::/64']})
    expect((r.conf.plugins[0]!.ipam as {ranges: unknown}).ranges).toEqual([[{gateway: '10.4.1.1', subnet: '10.4.1.0/24'}]])
    expect(r.warnings.join()).toMatch(/fd00:4::\/64 ignored: IPv6 subnets need --ipv6/)
  })

  it('--internal: no isGateway, no ipMasq, no routes, no portmap', () => {
    const p = plugins('int', {internal: true, subnets: ['10.30.0.0/16']})
    expect(p.map((x) => x.type)).toEqual(['bridge', 'firewall', 'tuning'])
    expect(Object.keys(p[0]!)).toEqual(['type', 'bridge', 'hairpinMode', 'ipam'])
    expect(p[0]!.ipam).toEqual({ranges: [[{gateway: '10.30.0.1', subnet: '10.30.0.0/16'}]], type: 'host-local'})
  })

  it('-o mtu / ip-masq / icc and their docker names', () => {
    const p = plugins('opts', {options: ['mtu=1400', 'ip-masq=false']})
    expect(Object.keys(p[0]!)).toEqual(['type', 'bridge', 'isGateway', 'mtu', 'hairpinMode', 'ipam'])
    expect(p[0]!.mtu).toBe(1400)
    const q = plugins('opts2', {options: ['com.docker.network.driver.mtu=9000', 'com.docker.network.bridge.enable_ip_masquerade=true']})
    expect(q[0]!.mtu).toBe(9000)
    expect(q[0]!.ipMasq).toBe(true)
    const r = render('opts3', {options: ['icc=false']})
    expect(r.conf.plugins[2]).toEqual({type: 'firewall', ingressPolicy: 'isolated'})
    expect(r.warnings).toEqual([])
    expect(plugins('opts5', {options: ['com.docker.network.bridge.enable_icc=true']})[2]).toEqual({type: 'firewall', ingressPolicy: 'same-bridge'})
    expect(plugins('opts4', {options: ['mtu=0']})[0]!.mtu).toBeUndefined()
  })

  it('-o com.docker.network.bridge.gateway_mode_ipv4/ipv6: routed recorded on the firewall entry, nat writes nothing', () => {
    expect(plugins('gm1', {options: ['com.docker.network.bridge.gateway_mode_ipv4=routed']})[2]).toEqual({type: 'firewall', ingressPolicy: 'same-bridge', gatewayModeIPv4: 'routed'})
    const q = plugins('gm2', {ipv6: true, options: ['com.docker.network.bridge.gateway_mode_ipv6=routed', 'com.docker.network.bridge.gateway_mode_ipv4=nat', 'icc=false']})
    expect(q[2]).toEqual({type: 'firewall', ingressPolicy: 'isolated', gatewayModeIPv6: 'routed'})
    expect(plugins('gm3', {options: ['com.docker.network.bridge.gateway_mode_ipv4=nat']})[2]).toEqual({type: 'firewall', ingressPolicy: 'same-bridge'})
    expect(() => plugins('gm4', {options: ['com.docker.network.bridge.gateway_mode_ipv4=isolated']})).toThrow(/gateway_mode_ipv4: "?isolated"? is not one of nat, routed/)
  })

  it('-o com.docker.network.bridge.name chooses the device', () => {
    expect(plugins('named', {options: ['com.docker.network.bridge.name=br-custom0']})[0]!.bridge).toBe('br-custom0')
  })

  it('macvlan: master written even when empty, mode only when given', () => {
    const p = plugins('mv', {driver: 'macvlan', subnets: ['192.168.50.0/24']})
    expect(p).toEqual([
      {type: 'macvlan', master: '', ipam: {ranges: [[{gateway: '192.168.50.1', subnet: '192.168.50.0/24'}]], routes: [{dst: '0.0.0.0/0'}], type: 'host-local'}},
    ])
    const q = plugins('mv2', {driver: 'macvlan', options: ['parent=eth0', 'macvlan_mode=bridge', 'mtu=1500'], ipv6: true, subnets: ['192.168.51.0/24']})
    expect(Object.keys(q[0]!)).toEqual(['type', 'master', 'mode', 'mtu', 'ipam', 'capabilities'])
    expect(q[0]).toMatchObject({master: 'eth0', mode: 'bridge', mtu: 1500, capabilities: {ips: true}})
  })

  it('ipvlan: mode l2/l3', () => {
    expect(plugins('iv', {driver: 'ipvlan', options: ['parent=eth0', 'mode=l3'], subnets: ['192.168.52.0/24']})[0]).toMatchObject({
      type: 'ipvlan',
      master: 'eth0',
      mode: 'l3',
    })
    expect(plugins('iv2', {driver: 'ipvlan', options: ['ipvlan_mode=l2']})[0]!.mode).toBe('l2')
  })

  it('dhcp: socket path, provide/request options sorted, host-name from NERDCTL_CNI_DHCP_HOSTNAME', () => {
    const i = ipam('dh', {
      driver: 'macvlan',
      ipamDriver: 'dhcp',
      options: ['parent=eth0'],
      ipamOptions: ['routers={"type":"request","skipDefault":true}', 'domain-name={"type":"provide","value":"example.org"}'],
    })
    expect(JSON.stringify(i)).toBe(
      '{"daemonSocketPath":"/run/cni/dhcp.sock","provide":[{"fromArg":"","option":"domain-name","value":"example.org"},{"fromArg":"NERDCTL_CNI_DHCP_HOSTNAME","option":"host-name","value":""}],"request":[{"option":"routers","skipDefault":true}],"type":"dhcp"}',
    )
  })

  it('host-local ignores --ipam-opt with a warning', () => {
    const r = render('hl', {ipamDriver: 'host-local', ipamOptions: ['x=y']})
    expect(r.warnings.join()).toMatch(/ipam option "x" ignored/)
    expect((r.conf.plugins[0]!.ipam as {type: string}).type).toBe('host-local')
  })

  it('/32 and /31 subnets: gateway as nerdctl computes it', () => {
    expect(ipam('p32', {subnets: ['10.99.0.7/32']}).ranges).toEqual([[{gateway: '10.99.0.7', subnet: '10.99.0.7/32'}]])
    expect(ipam('p31', {subnets: ['10.99.0.8/31']}).ranges).toEqual([[{gateway: '10.99.0.9', subnet: '10.99.0.8/31'}]])
  })

  it('goJson matches Go MarshalIndent (escapes <>& and U+2028)', () => {
    expect(goJson({a: '<x>&\u2028', b: [], c: {}})).toBe('{\n  "a": "\\u003cx\\u003e\\u0026\\u2028",\n  "b": [],\n  "c": {}\n}')
  })
})

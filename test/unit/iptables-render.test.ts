import {describe, expect, it} from 'vitest'
import {
  ACCEPT_CHAIN,
  EXPOSURE_CHAIN,
  MARK_MASQ_ENTRY,
  Ruleset,
  Tx,
  checkIn,
  checkPortsIn,
  dnatChain,
  exposureJump,
  exposureRules,
  formatChainName,
  formatComment,
  isolationRules,
  markMasqRule,
  masqRules,
  normalizeCidr,
  overlayReturn,
  planAdd,
  planDel,
  planExposure,
  planForwardPorts,
  planIpMasq,
  planIpMasqTeardown,
  planUnforwardPorts,
  privChainRules,
  removeBridgeRules,
  saveForm,
  saveString,
  setMarkRule,
  splitPortList,
  splitSaveLine,
} from '../../src/kernel/netfilter/iptables/index.js'
import {parseConfig, portForwarding} from '../../src/plugins/portmap/index.js'
import firewallPlugin, {forwardPolicy, forwardedContainer, parseFirewallConf} from '../../src/plugins/firewall/index.js'
import type {CniResult, PluginNetConf} from '../../src/plugins/types.js'

// What the reference plugins 1.1.1 left in iptables-save on this machine for
// bridge(t1, cid1, 10.99.0.2/24 + fd99::2/64) + portmap + firewall(same-bridge, br-t1).
const REF_NAT4 = `
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A POSTROUTING -s 10.99.0.2/32 -m comment --comment "name: \\"t1\\" id: \\"cid1\\"" -j CNI-db476744e784e26c7cfaffa0
-A CNI-DN-db476744e784e26c7cfaf -s 10.99.0.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-db476744e784e26c7cfaf -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-db476744e784e26c7cfaf -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.0.2:80
-A CNI-DN-db476744e784e26c7cfaf -s 10.99.0.0/24 -d 127.0.0.1/32 -p tcp -m tcp --dport 8081 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-db476744e784e26c7cfaf -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp -m tcp --dport 8081 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-db476744e784e26c7cfaf -d 127.0.0.1/32 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 10.99.0.2:81
-A CNI-DN-db476744e784e26c7cfaf -s 10.99.0.0/24 -p udp -m udp --dport 53 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-db476744e784e26c7cfaf -s 127.0.0.1/32 -p udp -m udp --dport 53 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-db476744e784e26c7cfaf -p udp -m udp --dport 53 -j DNAT --to-destination 10.99.0.2:53
-A CNI-DN-db476744e784e26c7cfaf -s 10.99.0.0/24 -p sctp -m sctp --dport 9091 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-db476744e784e26c7cfaf -s 127.0.0.1/32 -p sctp -m sctp --dport 9091 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-db476744e784e26c7cfaf -p sctp -m sctp --dport 9091 -j DNAT --to-destination 10.99.0.2:91
-A CNI-HOSTPORT-DNAT -p sctp -m comment --comment "dnat name: \\"t1\\" id: \\"cid1\\"" -m multiport --dports 9091 -j CNI-DN-db476744e784e26c7cfaf
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"t1\\" id: \\"cid1\\"" -m multiport --dports 8080,8081,9090 -j CNI-DN-db476744e784e26c7cfaf
-A CNI-HOSTPORT-DNAT -p udp -m comment --comment "dnat name: \\"t1\\" id: \\"cid1\\"" -m multiport --dports 53 -j CNI-DN-db476744e784e26c7cfaf
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
-A CNI-db476744e784e26c7cfaffa0 -d 10.99.0.0/24 -m comment --comment "name: \\"t1\\" id: \\"cid1\\"" -j ACCEPT
-A CNI-db476744e784e26c7cfaffa0 ! -d 224.0.0.0/4 -m comment --comment "name: \\"t1\\" id: \\"cid1\\"" -j MASQUERADE
`
const REF_NAT6 = `
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A POSTROUTING -s fd99::2/128 -m comment --comment "name: \\"t1\\" id: \\"cid1\\"" -j CNI-db476744e784e26c7cfaffa0
-A CNI-DN-db476744e784e26c7cfaf -s fd99::/64 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-db476744e784e26c7cfaf -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd99::2]:80
-A CNI-DN-db476744e784e26c7cfaf -s fd99::/64 -p udp -m udp --dport 53 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-db476744e784e26c7cfaf -p udp -m udp --dport 53 -j DNAT --to-destination [fd99::2]:53
-A CNI-DN-db476744e784e26c7cfaf -s fd99::/64 -d ::1/128 -p tcp -m tcp --dport 9090 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-db476744e784e26c7cfaf -d ::1/128 -p tcp -m tcp --dport 9090 -j DNAT --to-destination [fd99::2]:90
-A CNI-HOSTPORT-DNAT -p sctp -m comment --comment "dnat name: \\"t1\\" id: \\"cid1\\"" -m multiport --dports 9091 -j CNI-DN-db476744e784e26c7cfaf
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"t1\\" id: \\"cid1\\"" -m multiport --dports 8080,8081,9090 -j CNI-DN-db476744e784e26c7cfaf
-A CNI-HOSTPORT-DNAT -p udp -m comment --comment "dnat name: \\"t1\\" id: \\"cid1\\"" -m multiport --dports 53 -j CNI-DN-db476744e784e26c7cfaf
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
-A CNI-db476744e784e26c7cfaffa0 -d fd99::/64 -m comment --comment "name: \\"t1\\" id: \\"cid1\\"" -j ACCEPT
-A CNI-db476744e784e26c7cfaffa0 ! -d ff00::/8 -m comment --comment "name: \\"t1\\" id: \\"cid1\\"" -j MASQUERADE
`
const REF_FILTER4 = `
-A FORWARD -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-1
-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD
-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN
-A CNI-FORWARD -d 10.99.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A CNI-FORWARD -s 10.99.0.2/32 -j ACCEPT
-A CNI-ISOLATION-STAGE-1 -i br-t1 ! -o br-t1 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-2
-A CNI-ISOLATION-STAGE-1 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j RETURN
-A CNI-ISOLATION-STAGE-2 -o br-t1 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j DROP
-A CNI-ISOLATION-STAGE-2 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j RETURN
`

const PREV: CniResult = {
  cniVersion: '1.0.0',
  interfaces: [{name: 'br-t1', mac: 'b6:84:58:e2:07:2a'}, {name: 'veth5c14b5bd'}, {name: 'eth0', sandbox: '/var/run/netns/x'}],
  ips: [
    {interface: 2, address: '10.99.0.2/24', gateway: '10.99.0.1'},
    {interface: 2, address: 'fd99::2/64', gateway: 'fd99::1'},
  ],
}
const MAPPINGS = [
  {hostPort: 8080, containerPort: 80, protocol: 'tcp'},
  {hostPort: 8081, containerPort: 81, protocol: 'tcp', hostIP: '127.0.0.1'},
  {hostPort: 53, containerPort: 53, protocol: 'udp'},
  {hostPort: 9090, containerPort: 90, protocol: 'tcp', hostIP: '::1'},
  {hostPort: 9091, containerPort: 91, protocol: 'sctp', hostIP: '0.0.0.0'},
]

function conf(extra: Record<string, unknown> = {}): PluginNetConf {
  return {
    cniVersion: '1.0.0',
    name: 't1',
    type: 'portmap',
    prevResult: PREV,
    runtimeConfig: {portMappings: MAPPINGS},
    ...extra,
  } as PluginNetConf
}

/** The -A lines of a Ruleset table, in iptables-save order (built-ins first, then user chains sorted). */
function aLines(rs: Ruleset, table: string): string {
  const chains = rs.chains(table)
  const builtin = chains.filter((c) => /^[A-Z]+$/.test(c) && ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'].includes(c))
  const user = chains.filter((c) => !builtin.includes(c)).sort()
  const order = [...['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'].filter((c) => builtin.includes(c)), ...user]
  return order.flatMap((c) => rs.rules(table, c).map((r) => `-A ${c} ${r}`)).join('\n')
}

describe('chain names and comments (pkg/utils/utils.go)', () => {
  it('hashes name+id with sha512, cut to 28 chars', () => {
    expect(formatChainName('t1', 'cid1')).toBe('CNI-db476744e784e26c7cfaffa0')
    expect(formatChainName('t1', 'cid1', 'DN-')).toBe('CNI-DN-db476744e784e26c7cfaf')
    expect(formatChainName('t1', 'cid1')).toHaveLength(28)
    expect(formatChainName('t1', 'cid1', 'DN-')).toHaveLength(28)
  })
  it('formats comments like Go %q', () => {
    expect(formatComment('t1', 'cid1')).toBe('name: "t1" id: "cid1"')
    expect(formatComment('a"b', 'c\\d')).toBe('name: "a\\"b" id: "c\\\\d"')
  })
})

describe('saveForm', () => {
  it('orders header matches like iptables-save and normalises addresses', () => {
    expect(saveForm(['-p', 'tcp', '--dport', '80', '-i', 'eth0', '-o', 'eth1', '-d', '1.2.3.4', '-s', '10.0.0.5/8', '-j', 'ACCEPT'])).toBe(
      '-s 10.0.0.0/8 -d 1.2.3.4/32 -i eth0 -o eth1 -p tcp -m tcp --dport 80 -j ACCEPT',
    )
    expect(saveForm(['!', '-p', 'udp', '!', '-s', '1.1.1.1', '-j', 'ACCEPT'])).toBe('! -s 1.1.1.1/32 ! -p udp -j ACCEPT')
    expect(saveForm(['-p', 'TCP', '--dport', '80', '-j', 'ACCEPT'])).toBe('-p tcp -m tcp --dport 80 -j ACCEPT')
    expect(saveForm(['-m', 'multiport', '-p', 'tcp', '--destination-ports', '1,2', '-j', 'X'])).toBe('-p tcp -m multiport --dports 1,2 -j X')
    expect(saveForm(['-p', 'tcp', '-m', 'comment', '--comment', 'x', '--dport', '80', '-j', 'ACCEPT'])).toBe(
      '-p tcp -m comment --comment x -m tcp --dport 80 -j ACCEPT',
    )
  })
  it('quotes like xtables_save_string', () => {
    expect(saveString('foo')).toBe('foo')
    expect(saveString('a.b')).toBe('"a.b"')
    expect(saveString(`a'b"c\\d e`)).toBe(`"a\\'b\\"c\\\\d e"`)
    expect(splitSaveLine(`-m comment --comment "a\\'b\\"c\\\\d e" -j ACCEPT`)).toEqual(['-m', 'comment', '--comment', `a'b"c\\d e`, '-j', 'ACCEPT'])
  })
  it('normalises CIDRs', () => {
    expect(normalizeCidr('10.99.0.2/24')).toBe('10.99.0.0/24')
    expect(normalizeCidr('fd99::2/64')).toBe('fd99::/64')
    expect(normalizeCidr('::1')).toBe('::1/128')
  })
})

describe('portmap rendering (reference 1.1.1)', () => {
  it('renders the reference state for IPv4 and IPv6 (ipmasq included)', () => {
    const {conf: c} = parseConfig({config: conf(), containerId: 'cid1', ifName: 'eth0'})
    expect(c.contIPv4).toBe('10.99.0.2/24')
    expect(c.contIPv6).toBe('fd99::2/64')
    for (const [fam, net, ref] of [
      [4, c.contIPv4!, REF_NAT4],
      [6, c.contIPv6!, REF_NAT6],
    ] as const) {
      const tx = new Tx(new Ruleset(fam))
      // bridge's masquerade first, as in a chain ADD
      planIpMasq(tx, 't1', 'cid1', [net])
      planForwardPorts(tx, portForwarding(c), net)
      expect(aLines(tx.state, 'nat')).toBe(ref.trim())
      expect(tx.restoreInput().startsWith('*nat\n-N CNI-db476744e784e26c7cfaffa0\n')).toBe(true)
    }
  })
  it('is idempotent: a second plan against the resulting state changes nothing', () => {
    const {conf: c} = parseConfig({config: conf(), containerId: 'cid1', ifName: 'eth0'})
    const state = Ruleset.parse(4, `*nat\n:PREROUTING ACCEPT [0:0]\n${REF_NAT4.trim()}\nCOMMIT\n`)
    const tx = new Tx(state)
    planIpMasq(tx, 't1', 'cid1', [c.contIPv4!])
    planForwardPorts(tx, portForwarding(c), c.contIPv4!)
    expect(tx.empty).toBe(true)
    expect(checkPortsIn(state, portForwarding(c), c.contIPv4!)).toBeUndefined()
  })
  it('teardown removes per-container chains and jumps only', () => {
    const state = Ruleset.parse(4, `*nat\n${REF_NAT4.trim()}\nCOMMIT\n`)
    const tx = new Tx(state)
    planUnforwardPorts(tx, 't1', 'cid1')
    planIpMasqTeardown(tx, 't1', 'cid1')
    expect(tx.state.chains('nat').sort()).toEqual(['CNI-HOSTPORT-DNAT', 'CNI-HOSTPORT-MASQ', 'CNI-HOSTPORT-SETMARK', 'OUTPUT', 'POSTROUTING', 'PREROUTING'])
    expect(tx.state.rules('nat', 'CNI-HOSTPORT-DNAT')).toEqual([])
    expect(tx.state.rules('nat', 'POSTROUTING')).toEqual([MARK_MASQ_ENTRY])
    const input = tx.restoreInput()
    expect(input).toContain('-F CNI-DN-db476744e784e26c7cfaf\n-X CNI-DN-db476744e784e26c7cfaf')
    expect(input.indexOf('-D CNI-HOSTPORT-DNAT')).toBeLessThan(input.indexOf('-X CNI-DN-'))
    // a second teardown is a no-op
    const again = new Tx(tx.state)
    planUnforwardPorts(again, 't1', 'cid1')
    planIpMasqTeardown(again, 't1', 'cid1')
    expect(again.empty).toBe(true)
  })
  it('splits multiport lists at 15 and honours snat=false, markMasqBit, externalSetMarkChain, conditions', () => {
    expect(splitPortList(Array.from({length: 17}, (_, i) => 1000 + i))).toHaveLength(2)
    const {conf: c} = parseConfig({
      config: conf({snat: false, conditionsV4: ['!', '-d', '192.168.0.0/16'], runtimeConfig: {portMappings: [MAPPINGS[0]]}}),
      containerId: 'cid1',
      ifName: 'eth0',
    })
    const dn = dnatChain(portForwarding(c), c.contIPv4!)
    expect(dn.rules).toEqual(['-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.0.2:80'])
    expect(dn.entryRules).toEqual([
      '! -d 192.168.0.0/16 -p tcp -m comment --comment "dnat name: \\"t1\\" id: \\"cid1\\"" -m multiport --dports 8080 -j CNI-DN-db476744e784e26c7cfaf',
    ])
    expect(setMarkRule(0)).toBe('-m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x1/0x1')
    expect(markMasqRule(31)).toBe('-m mark --mark 0x80000000/0x80000000 -j MASQUERADE')
    const ext = parseConfig({config: conf({externalSetMarkChain: 'KUBE-MARK-MASQ'}), containerId: 'cid1', ifName: 'eth0'}).conf
    expect(dnatChain(portForwarding(ext), ext.contIPv4!).rules[0]).toBe('-s 10.99.0.0/24 -p tcp -m tcp --dport 8080 -j KUBE-MARK-MASQ')
    expect(() => parseConfig({config: conf({externalSetMarkChain: 'X', markMasqBit: 3}), containerId: 'c', ifName: 'eth0'})).toThrow(/Cannot specify/)
    expect(() => parseConfig({config: conf({markMasqBit: 32}), containerId: 'c', ifName: 'eth0'})).toThrow(/between 0 and 31/)
  })
  it('picks the container addresses like the reference (sandbox interface = ifName)', () => {
    const prev: CniResult = {
      cniVersion: '1.0.0',
      interfaces: [{name: 'br0'}, {name: 'eth0', sandbox: '/x'}],
      ips: [
        {interface: 0, address: '10.1.0.1/24'},
        {interface: 1, address: '10.1.0.5/24'},
        {address: '10.2.0.5/24'},
      ],
    }
    const {conf: c} = parseConfig({config: conf({prevResult: prev}), containerId: 'c', ifName: 'eth0'})
    expect(c.contIPv4).toBe('10.1.0.5/24')
    expect(c.contIPv6).toBeUndefined()
  })
})

describe('ipmasq rendering', () => {
  it('emits the rules in save form', () => {
    const r = masqRules('CNI-x', 'name: "n" id: "c"', '10.4.0.9/16')
    expect(r.accept).toBe('-d 10.4.0.0/16 -m comment --comment "name: \\"n\\" id: \\"c\\"" -j ACCEPT')
    expect(r.masq).toBe('! -d 224.0.0.0/4 -m comment --comment "name: \\"n\\" id: \\"c\\"" -j MASQUERADE')
    expect(r.jump).toBe('-s 10.4.0.9/32 -m comment --comment "name: \\"n\\" id: \\"c\\"" -j CNI-x')
  })
  it('two addresses of one family share the chain; MASQUERADE once (AppendUnique)', () => {
    const tx = new Tx(new Ruleset(4))
    planIpMasq(tx, 'n', 'c', ['10.1.0.2/24', '10.2.0.2/24'])
    const chain = formatChainName('n', 'c')
    expect(tx.state.rules('nat', chain)).toEqual([
      masqRules(chain, formatComment('n', 'c'), '10.1.0.2/24').accept,
      masqRules(chain, formatComment('n', 'c'), '10.1.0.2/24').masq,
      masqRules(chain, formatComment('n', 'c'), '10.2.0.2/24').accept,
    ])
    expect(tx.state.rules('nat', 'POSTROUTING')).toHaveLength(2)
  })
})

describe('firewall rendering (reference 1.1.1)', () => {
  it('renders the reference filter state with same-bridge, FORWARD order included', () => {
    const fc = forwardPolicy(parseFirewallConf({cniVersion: '1.0.0', name: 't1', type: 'firewall', backend: 'iptables', ingressPolicy: 'same-bridge'}))
    const tx = new Tx(new Ruleset(4))
    planAdd(tx, fc, forwardedContainer(PREV))
    expect(aLines(tx.state, 'filter')).toBe(REF_FILTER4.trim())
    // idempotent, CHECK passes, DEL removes the per-IP rules only
    const again = new Tx(tx.state)
    planAdd(again, fc, forwardedContainer(PREV))
    expect(again.empty).toBe(true)
    expect(checkIn(tx.state, fc, forwardedContainer(PREV))).toBeUndefined()
    const del = new Tx(tx.state)
    planDel(del, forwardedContainer(PREV))
    for (const r of privChainRules('10.99.0.2/24')) expect(del.state.hasRule('filter', 'CNI-FORWARD', r)).toBe(false)
    expect(del.state.rules('filter', 'CNI-ISOLATION-STAGE-1')).toHaveLength(2)
    expect(checkIn(del.state, fc, forwardedContainer(PREV))).toMatch(/expected rule/)
  })
  it('inserts a second bridge before the first in stage 1 and 2', () => {
    const fc = forwardPolicy(parseFirewallConf({cniVersion: '1.0.0', name: 't1', type: 'firewall', ingressPolicy: 'same-bridge'}))
    const tx = new Tx(new Ruleset(4))
    planAdd(tx, fc, forwardedContainer(PREV))
    planAdd(tx, fc, forwardedContainer({...PREV, interfaces: [{name: 'br-t2'}], ips: [{address: '10.98.0.2/24'}]}))
    expect(tx.state.rules('filter', 'CNI-ISOLATION-STAGE-1')[0]).toBe(isolationRules('br-t2').stage1Bridge)
    expect(tx.state.rules('filter', 'FORWARD')).toHaveLength(2)
  })
  it('rejects firewalld and unknown policies', () => {
    expect(() => parseFirewallConf({cniVersion: '1.0.0', name: 'n', type: 'firewall', backend: 'firewalld'})).toThrow(/firewalld/)
    expect(() => parseFirewallConf({cniVersion: '1.0.0', name: 'n', type: 'firewall', ingressPolicy: 'x'})).toThrow(/unknown ingress policy/)
  })
})

describe('firewall rendering: isolated (reference 1.7.1), exposure and removeBridge', () => {
  const conf = (extra: Record<string, unknown>) => parseFirewallConf({cniVersion: '1.0.0', name: 't1', type: 'firewall', ...extra})
  it('renders ingressPolicy "isolated" as the reference v1.7.1 does, comments byte for byte', () => {
    const tx = new Tx(new Ruleset(4))
    planAdd(tx, forwardPolicy(conf({ingressPolicy: 'isolated'})), forwardedContainer(PREV))
    const D = '"CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)"'
    const I = '"CNI firewall plugin rules (ingressPolicy: isolated)"'
    expect(tx.state.rules('filter', 'FORWARD')[0]).toBe(`-m comment --comment ${D} -j CNI-ISOLATION-STAGE-1`)
    expect(tx.state.rules('filter', 'CNI-ISOLATION-STAGE-1')).toEqual([
      `-i br-t1 -o br-t1 -m comment --comment ${I} -j DROP`,
      `-i br-t1 ! -o br-t1 -m comment --comment ${I} -j CNI-ISOLATION-STAGE-2`,
      `-m comment --comment ${D} -j RETURN`,
    ])
    expect(tx.state.rules('filter', 'CNI-ISOLATION-STAGE-2')).toEqual([`-o br-t1 -m comment --comment ${D} -j DROP`, `-m comment --comment ${D} -j RETURN`])
  })
  it('refuses a gateway mode that is not nat or routed, by field name', () => {
    const c = {cniVersion: '1.0.0', name: 't1', type: 'firewall', gatewayModeIPv4: 'isolated'}
    expect(() => firewallPlugin.parse(c, 'plugins[2]', {} as never)).toThrow(/plugins\[2\]\.gatewayModeIPv4: must be nat or routed/)
    expect(firewallPlugin.parse({...c, gatewayModeIPv4: 'nat'}, 'plugins[2]', {} as never).exposure).toEqual({4: 'published', 6: 'published'})
  })
  it('parses the gateway modes into a per-family exposure', () => {
    expect(forwardPolicy(conf({}))).toMatchObject({isolation: 'none', exposure: 'published'})
    const c = conf({ingressPolicy: 'isolated', gatewayModeIPv6: 'routed'})
    expect(forwardPolicy(c, 4)).toMatchObject({isolation: 'isolated', exposure: 'published'})
    expect(forwardPolicy(c, 6)).toMatchObject({isolation: 'isolated', exposure: 'routed'})
  })
  it('plans a bridge exposure idempotently, switches it, and removeBridgeRules leaves no rule naming the bridge', () => {
    const tx = new Tx(new Ruleset(4))
    const fc = forwardPolicy(conf({ingressPolicy: 'same-bridge'}))
    planAdd(tx, fc, forwardedContainer(PREV), {bridge: 'br-t1', exposure: 'published'})
    planAdd(tx, fc, forwardedContainer({...PREV, interfaces: [{name: 'br-t2'}], ips: [{address: '10.98.0.2/24'}]}), {bridge: 'br-t2', exposure: 'routed'})
    const r1 = exposureRules('br-t1')
    expect(tx.state.rules('filter', EXPOSURE_CHAIN)).toEqual([exposureRules('br-t2').inside, r1.inside, overlayReturn(), r1.published])
    expect(r1.published).toBe('-o br-t1 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -m comment --comment "ctrnet: published ports only" -j DROP')
    expect(tx.state.rules('filter', ACCEPT_CHAIN)).toContain(exposureRules('br-t2').routed)
    expect(tx.state.rules('filter', ACCEPT_CHAIN)).not.toContain(r1.routed)
    expect(tx.state.rules('filter', 'FORWARD')[0]).toBe(exposureJump())
    const again = new Tx(tx.state)
    planAdd(again, fc, forwardedContainer(PREV), {bridge: 'br-t1', exposure: 'published'})
    expect(again.empty).toBe(true)
    const routed = new Tx(tx.state)
    planExposure(routed, {bridge: 'br-t1', exposure: 'routed'})
    expect(routed.state.hasRule('filter', EXPOSURE_CHAIN, r1.published)).toBe(false)
    expect(routed.state.hasRule('filter', ACCEPT_CHAIN, r1.routed)).toBe(true)
    const rm = new Tx(tx.state)
    removeBridgeRules(rm, 'br-t1')
    expect(rm.state.toText()).not.toMatch(/br-t1\b/)
    expect(rm.state.toText()).toMatch(/br-t2/)
    expect(rm.state.rules('filter', 'CNI-ISOLATION-STAGE-1')).toHaveLength(2)
    const twice = new Tx(rm.state)
    removeBridgeRules(twice, 'br-t1')
    expect(twice.empty).toBe(true)
  })
})

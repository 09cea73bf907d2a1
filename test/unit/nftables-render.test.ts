/**
 * The nftables backend's writer and renderings (no nft run here: the e2e file
 * test/e2e/nftables-backend.test.ts feeds them to a real nft).
 */
import {describe, expect, it} from 'vitest'
import {FWD_ACCEPT_MARK, IPTABLES_ACCEPT_RULE, NftablesFirewall, hash16, masqComment, parseListing} from '../../src/kernel/netfilter/nftables/index.js'
import {emptyWithout} from '../../src/kernel/netfilter/nftables/forwarding.js'
import {
  NftScript,
  addr,
  bits,
  comment,
  dnatTarget,
  handle,
  ident,
  ifname,
  kw,
  net,
  port,
  proto,
  setRef,
} from '../../src/kernel/netfilter/nftables/script.js'
import {UnsafeTokenError} from '../../src/kernel/tokens.js'
import {formatError} from '../../src/sys/errors.js'
import {PAYLOADS} from '../fixtures/injection-payloads.js'
import type {PortForwarding} from '../../src/kernel/netfilter/firewall.js'

function refused(fn: () => unknown, re: RegExp = /nftables: refused/): string {
  let err: unknown
  try {
    fn()
  } catch (e) {
    err = e
  }
  expect(err, 'expected a refusal').toBeInstanceOf(UnsafeTokenError)
  const line = formatError(err)
  expect(line).toMatch(re)
  expect(line).not.toContain('\n')
  expect(line.length).toBeLessThan(400)
  return line
}

describe('nftables script writer', () => {
  it('renders statements from typed words', () => {
    const s = new NftScript()
      .addTable('ip', 'cni_hostport', 'CNI portmap plugin')
      .addChain('ip', 'cni_hostport', 'prerouting', {base: {type: 'nat', hook: 'prerouting', priority: -100}})
      .addChain('inet', 'cni_plugins_masquerade', 'masq_checks', {comment: 'Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet'})
      .flushChain('ip', 'cni_hostport', 'prerouting')
      .addRule('ip', 'cni_hostport', 'hostports', [proto('tcp'), kw('dport'), port(8080), kw('dnat'), kw('to'), dnatTarget('10.88.0.5', 80, 4)], 'c1')
      .addRule('ip6', 'cni_hostport', 'hostports', [proto('udp'), kw('dport'), port(53), kw('dnat'), kw('to'), dnatTarget('fd00:88:0:0::5', 53, 6)], 'c1')
      .deleteRule('ip', 'cni_hostport', 'hostports', 12)
      .addSet('inet', 'ctrnet', 'bridge_inputs', 'ifname . ifname')
      .addElements('inet', 'ctrnet', 'bridge_inputs', [[ifname('br0'), ifname('br0')], [ifname('ctrnet.42'), ifname('br0')]])
      .deleteElements('inet', 'ctrnet', 'fwd4', [addr('10.88.0.5', 4)])
      .addRule('inet', 'ctrnet', 'forward', [kw('iifname'), setRef('isolated_bridges'), kw('drop')])
    expect(s.text()).toBe(
      [
        'add table ip cni_hostport { comment "CNI portmap plugin" ; }',
        'add chain ip cni_hostport prerouting { type nat hook prerouting priority -100 ; }',
        'add chain inet cni_plugins_masquerade masq_checks { comment "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet" ; }',
        'flush chain ip cni_hostport prerouting',
        'add rule ip cni_hostport hostports tcp dport 8080 dnat to 10.88.0.5:80 comment "c1"',
        'add rule ip6 cni_hostport hostports udp dport 53 dnat to [fd00:88::5]:53 comment "c1"',
        'delete rule ip cni_hostport hostports handle 12',
        'add set inet ctrnet bridge_inputs { type ifname . ifname ; }',
        'add element inet ctrnet bridge_inputs { "br0" . "br0", "ctrnet.42" . "br0" }',
        'delete element inet ctrnet fwd4 { 10.88.0.5 }',
        'add rule inet ctrnet forward iifname @isolated_bridges drop',
        '',
      ].join('\n'),
    )
  })

  it('renders networks with the host bits cleared and addresses canonical', () => {
    expect(net('10.88.0.5/16').text).toBe('10.88.0.0/16')
    expect(net('fd00:88::5/64').text).toBe('fd00:88::/64')
    expect(addr('fd00:0088:0000::0005').text).toBe('fd00:88::5')
  })

  const good: Array<[string, (v: string) => unknown, string]> = [
    ['name', ident, 'cni_hostport'],
    ['set', setRef, 'fwd4'],
    ['address', (v) => addr(v), '10.88.0.5'],
    ['network', (v) => net(v), '10.88.0.0/16'],
    ['interface name', ifname, 'br0'],
    ['comment', comment, 'c1, net: n, if: eth0, id: c1'],
    ['protocol', proto, 'tcp'],
  ]
  for (const [what, make, base] of good) {
    it(`refuses every hostile ${what}`, () => {
      expect(() => make(base)).not.toThrow()
      for (const p of PAYLOADS) {
        const v = p.make(base, false)
        // spaces and '-' are text inside a comment's quotes: it stays one quoted word
        if (what === 'comment' && p.name === '" -j ACCEPT"') expect((make(v) as {text: string}).text).toBe(`"${v}"`)
        else refused(() => make(v))
      }
      for (const bad of [`${base};flush ruleset`, `${base} }`, `${base}{`, `${base}$x`, `${base}\\`, `${base}\u2028`]) refused(() => make(bad))
    })
  }

  it('refuses numbers out of range and words that are not checked', () => {
    for (const p of [0, 65536, -1, 1.5, NaN]) refused(() => port(p))
    for (const h of [-1, 1.5, NaN]) refused(() => handle(h))
    refused(() => kw('flush ruleset' as never))
    refused(() => addr('10.0.0.1', 6))
    refused(() => net('fd00::/64', 4))
    refused(() => comment('x'.repeat(129)))
    refused(() => proto('TCP'))
    refused(() => new NftScript().addRule('ip', 't', 'c', ['drop' as never]))
    refused(() => new NftScript().addRule('ip', 't', 'c', []))
    refused(() => new NftScript().addTable('arp' as never, 't'))
    refused(() => new NftScript().addChain('ip', 't', 'c', {base: {type: 'nat', hook: 'prerouting', priority: 1e6}}))
  })
})

describe('nftables backend renderings', () => {
  it('masquerade comments are the reference ipMasq ones', () => {
    expect(hash16('unit-test')).toBe('6fd94d501e58f0aa')
    expect(hash16('eth0:one')).toBe('287fc69eff0574a2')
    expect(masqComment('ctrnet', 'eth0', 'c1')).toBe('078e6d3bf67df9ee-f4d01f2ef4b92245, net: ctrnet, if: eth0, id: c1')
    expect(masqComment('n', 'eth0', 'x'.repeat(200)).length).toBe(128)
  })

  it('an ADD is additions only: the reference layout, both families in one script', async () => {
    const tx = new NftablesFirewall('/nonexistent/lock')
    await tx.masquerade({network: 'ctrnet', containerId: 'c1', ifName: 'eth0', addresses: ['10.88.0.5/16', 'fd00:88::5/64']})
    const p: PortForwarding = {
      network: 'ctrnet',
      containerId: 'c1',
      ports: [
        {hostPort: 8080, containerPort: 80, protocol: 'tcp'},
        {hostPort: 8081, containerPort: 81, protocol: 'tcp', hostIP: '192.0.2.10'},
        {hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '::'},
      ],
      addresses: {4: '10.88.0.5/16', 6: 'fd00:88::5/64'},
      hairpinMasquerade: {kind: 'mark', bit: 13},
    }
    await tx.publishPorts(p)
    const text = tx.script()
    expect(text).toContain(
      'add rule inet cni_plugins_masquerade masq_checks ip saddr 10.88.0.5 ip daddr != 10.88.0.0/16 masquerade comment "078e6d3bf67df9ee-f4d01f2ef4b92245, net: ctrnet, if: eth0, id: c1"',
    )
    expect(text).toContain('add rule inet cni_plugins_masquerade masq_checks ip6 saddr fd00:88::5 ip6 daddr != fd00:88::/64 masquerade comment')
    expect(text).toContain('add rule ip cni_hostport prerouting fib daddr type local jump hostports_all\n')
    expect(text).toContain('add rule ip cni_hostport hostports tcp dport 8080 dnat to 10.88.0.5:80 comment "c1"')
    expect(text).toContain('add rule ip cni_hostport hostports ip daddr 192.0.2.10 tcp dport 8081 dnat to 10.88.0.5:81 comment "c1"')
    expect(text).not.toContain('ip6 daddr 192.0.2.10')
    expect(text).toContain('add rule ip6 cni_hostport hostports udp dport 5353 dnat to [fd00:88::5]:53 comment "c1"')
    expect(text).toContain('add rule ip cni_hostport masquerading ip saddr 10.88.0.0/16 ip daddr 10.88.0.5 ct status dnat masquerade comment "c1"')
    expect(text).toContain('add rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 10.88.0.5 masquerade comment "c1"')
    expect(text).toContain('add rule ip6 cni_hostport masquerading ip6 saddr fd00:88::/64 ip6 daddr fd00:88::5 ct status dnat masquerade comment "c1"')
    expect(text).not.toMatch(/^(list|delete)/m)
  })

  it('an ADD costs the same lines whatever the host holds, and grows with its own ports only', async () => {
    const lines = async (n: number) => {
      const tx = new NftablesFirewall()
      const ports = Array.from({length: n}, (_, i) => ({hostPort: 10000 + i, containerPort: 80, protocol: 'tcp'}))
      await tx.publishPorts({network: 'n', containerId: 'c', ports, addresses: {4: '10.0.0.2/24'}, hairpinMasquerade: {kind: 'mark', bit: 13}})
      return tx.script().trim().split('\n').length
    }
    expect((await lines(32)) - (await lines(1))).toBe(31)
  })

  it('refuses what only iptables can do, and hostile values, before anything runs', async () => {
    const tx = new NftablesFirewall()
    const base: PortForwarding = {network: 'n', containerId: 'c', ports: [], addresses: {4: '10.0.0.2/24'}, hairpinMasquerade: {kind: 'chain', chain: 'KUBE-MARK-MASQ'}}
    await expect(tx.publishPorts(base)).rejects.toThrow(/iptables-only/)
    await expect(tx.publishPorts({...base, hairpinMasquerade: {kind: 'none'}, extraMatch: {4: ['-s', '1.2.3.4']}})).rejects.toThrow(/iptables-only/)
    for (const pl of PAYLOADS) {
      // adminChain and bridge are bare words: every payload is refused
      await expect(tx.acceptForwarding({adminChain: pl.make('CNI-ADMIN', false), isolation: 'none', exposure: 'routed'}, {addresses: ['10.0.0.2/24']})).rejects.toThrow(
        /refused/,
      )
      await expect(tx.acceptForwarding({adminChain: 'A', isolation: 'bridge', exposure: 'published'}, {addresses: ['10.0.0.2/24'], bridge: pl.make('br0', false)})).rejects.toThrow(
        /refused/,
      )
      // the id and the network only travel inside a quoted comment, where spaces and '-' are text
      if (pl.name === '" -j ACCEPT"') continue
      await expect(tx.publishPorts({...base, hairpinMasquerade: {kind: 'none'}, containerId: pl.make('c', false)})).rejects.toThrow(/refused/)
      await expect(tx.masquerade({network: 'n', containerId: pl.make('c', false), addresses: ['10.0.0.2/24']})).rejects.toThrow(/refused/)
    }
    expect(tx.script()).toBe('')
  })

  it('forwarding: elements per container and per bridge, removal adds then deletes', async () => {
    const tx = new NftablesFirewall()
    await tx.acceptForwarding({adminChain: 'CNI-ADMIN', isolation: 'bridge', exposure: 'published'}, {addresses: ['10.88.0.5/16', 'fd00:88::5/64'], bridge: 'br0', ingress: ['ctrnet.7']})
    await tx.removeForwarding({addresses: ['10.88.0.6/16']})
    const text = tx.script()
    expect(text).toContain('add rule inet ctrnet forward jump CNI-ADMIN\n')
    expect(text).toContain('add rule inet ctrnet forward oifname @published_bridges iifname != "ctrnet.*" ct state new ct status & dnat == 0 iifname . oifname != @bridge_inputs drop\n')
    expect(text).toContain('add element inet ctrnet fwd4 { 10.88.0.5 }\nadd element inet ctrnet fwd6 { fd00:88::5 }\n')
    expect(text).toContain('add element inet ctrnet isolated_bridges { "br0" }')
    expect(text).toContain('add element inet ctrnet bridge_inputs { "br0" . "br0", "ctrnet.7" . "br0" }')
    expect(text).toContain('add element inet ctrnet fwd4 { 10.88.0.6 }\ndelete element inet ctrnet fwd4 { 10.88.0.6 }\n')
  })

  it('forwarding: every accept sets the mark bit that iptables FORWARD accepts; routed bridges have a set', async () => {
    expect(FWD_ACCEPT_MARK).toBe(0x10000000)
    for (const taken of [0x1000, 0x2000, 0x4000, 0x8000, 0xff0000, 0x0f00]) expect(FWD_ACCEPT_MARK & taken).toBe(0)
    const tx = new NftablesFirewall()
    await tx.acceptForwarding({adminChain: 'CNI-ADMIN', isolation: 'none', exposure: 'routed'}, {addresses: ['10.88.0.5/16'], bridge: 'br1'})
    const rules = tx.script().split('\n').filter((l) => l.startsWith('add rule inet ctrnet forward '))
    const m = 'meta mark set meta mark | 0x10000000 accept'
    expect(rules.map((l) => l.slice('add rule inet ctrnet forward '.length))).toEqual([
      'jump CNI-ADMIN',
      'iifname @isolated_bridges oifname @isolated_bridges iifname . oifname != @bridge_inputs drop',
      'oifname @published_bridges iifname != "ctrnet.*" ct state new ct status & dnat == 0 iifname . oifname != @bridge_inputs drop',
      `ip saddr @fwd4 ${m}`,
      `ip6 saddr @fwd6 ${m}`,
      `ip daddr @fwd4 ct state established,related ${m}`,
      `ip6 daddr @fwd6 ct state established,related ${m}`,
      `ip daddr @fwd4 ct status dnat ${m}`,
      `ip6 daddr @fwd6 ct status dnat ${m}`,
      `iifname "ctrnet.*" ip daddr @fwd4 ${m}`,
      `iifname "ctrnet.*" ip6 daddr @fwd6 ${m}`,
      `oifname @routed_bridges ${m}`,
    ])
    expect(tx.script()).toContain('add set inet ctrnet routed_bridges { type ifname ; }\n')
    expect(tx.script()).toContain('add element inet ctrnet routed_bridges { "br1" }\n')
    expect(IPTABLES_ACCEPT_RULE).toEqual(['-m', 'mark', '--mark', '0x10000000/0x10000000', '-m', 'comment', '--comment', 'ctrnet: accepted in nftables table inet ctrnet', '-j', 'ACCEPT'])
  })

  it('mark bits: 32-bit masks only', () => {
    expect(bits(0x10000000).text).toBe('0x10000000')
    expect(bits(1).text).toBe('0x00000001')
    for (const v of [0, -1, 0x100000000, 1.5, NaN, '0x1' as unknown as number]) refused(() => bits(v))
  })

  it('the generic iptables accept goes only when the table is left with nothing', () => {
    const t = (sets: Record<string, string[]>) => ({chains: new Set<string>(), rules: [], sets: new Map(Object.entries(sets))})
    expect(emptyWithout(undefined, 'br0')).toBe(true)
    expect(emptyWithout(t({fwd4: [], fwd6: [], isolated_bridges: ['br0'], published_bridges: ['"br0"'], routed_bridges: [], bridge_inputs: ['br0 . br0', 'ctrnet.7 . br0']}), 'br0')).toBe(true)
    expect(emptyWithout(t({fwd4: ['10.0.0.2'], fwd6: []}), 'br0')).toBe(false)
    expect(emptyWithout(t({fwd4: [], fwd6: ['fd00::2']}), 'br0')).toBe(false)
    expect(emptyWithout(t({fwd4: [], routed_bridges: ['br1']}), 'br0')).toBe(false)
    expect(emptyWithout(t({fwd4: [], bridge_inputs: ['br1 . br1']}), 'br0')).toBe(false)
  })

  it('parses nft --json listings: rules with handles and comments, set elements', () => {
    const l = parseListing(
      JSON.stringify({
        nftables: [
          {metainfo: {}},
          {table: {family: 'ip', name: 'cni_hostport'}},
          {chain: {name: 'hostports'}},
          {rule: {chain: 'hostports', handle: 7, comment: 'c1', expr: []}},
          {rule: {chain: 'hostports', handle: 8, expr: []}},
          {set: {name: 'bridge_inputs', elem: [{concat: ['br0', 'br0']}]}},
          {set: {name: 'fwd4', elem: ['10.0.0.1', {elem: {val: '10.0.0.2', comment: 'x'}}]}},
        ],
      }),
    )
    expect([...l.chains]).toEqual(['hostports'])
    expect(l.rules).toEqual([{chain: 'hostports', handle: 7, comment: 'c1'}, {chain: 'hostports', handle: 8}])
    expect(l.sets.get('bridge_inputs')).toEqual(['br0 . br0'])
    expect(l.sets.get('fwd4')).toEqual(['10.0.0.1', '10.0.0.2'])
  })
})

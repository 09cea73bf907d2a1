import {describe, expect, it} from 'vitest'
import {Ruleset, Tx, saveForm} from '../../src/kernel/netfilter/iptables/index.js'
import {renderBatch} from '../../src/kernel/ip/batch.js'
import {assertSysctlKey, assertSysctlValue} from '../../src/kernel/tokens.js'
import {cmdLinkSet, cmdVethAdd} from '../../src/kernel/ip/link.js'
import {cmdAddrAdd} from '../../src/kernel/ip/addr.js'
import {nftBaseChain, nftQuoted, renderNft} from '../../src/kernel/netfilter/nft.js'
import {sysctlKeyFromDotted} from '../../src/kernel/sysctl.js'
import {formatError} from '../../src/sys/errors.js'

const LONG = 'a'.repeat(10_000)
const HOSTILE = ['tcp\n--flush\n#', '-j', '--flush', '! -s 10.0.0.1', 'a"b', "a'b", 'a#b', 'a\0b', 'a\rb', LONG, 'eth０', 'eth\u200f0', 'a b', '']

/** Asserts fn throws a one-line message matching re (after formatError) and returns it. */
function refused(fn: () => unknown, re: RegExp): string {
  let err: unknown
  try {
    fn()
  } catch (e) {
    err = e
  }
  expect(err, 'expected a refusal').toBeInstanceOf(Error)
  const line = formatError(err)
  expect(line).toMatch(re)
  expect(line).not.toContain('\n')
  expect(line.length).toBeLessThan(400)
  return line
}

describe('iptables writer', () => {
  it('renders good rules exactly as before', () => {
    expect(saveForm(['-p', 'tcp', '--dport', '8080', '-d', '127.0.0.1', '-j', 'DNAT', '--to-destination', '10.99.0.2:80'])).toBe(
      '-d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.0.2:80',
    )
    expect(saveForm(['-m', 'comment', '--comment', 'name: "t1" id: "c#1"', '-j', 'CNI-x'])).toBe('-m comment --comment "name: \\"t1\\" id: \\"c#1\\"" -j CNI-x')
    expect(saveForm(['-p', 'udp', '-j', 'DNAT', '--to-destination', '[fd99::2]:53'])).toBe('-p udp -j DNAT --to-destination [fd99::2]:53')
    const tx = new Tx(new Ruleset(4))
    tx.ensureChain('nat', 'CNI-DN-x').appendUnique('nat', 'CNI-DN-x', saveForm(['-s', '10.0.0.0/8', '-j', 'ACCEPT']))
    expect(tx.restoreInput()).toBe('*nat\n-N CNI-DN-x\n-A CNI-DN-x -s 10.0.0.0/8 -j ACCEPT\nCOMMIT\n')
  })
  it('refuses hostile protocols, ports, addresses, interfaces, targets and options, naming the field', () => {
    refused(() => saveForm(['-p', 'tcp\n--flush\n#', '--dport', '8080', '-j', 'X']), /refused token "tcp\\n--flush\\n#" for -p in rule : contains a newline/)
    refused(() => saveForm(['-p', 'tcp', '-d', '10.0.0.1 ! -s 10.91.0.7', '-j', 'X']), /for -d .*contains whitespace/)
    refused(() => saveForm(['-p', 'tcp', '--dport', '0', '-j', 'X']), /for --dport .*1\.\.65535/)
    refused(() => saveForm(['-p', 'tcp', '--dport', '65536', '-j', 'X']), /for --dport/)
    refused(() => saveForm(['-p', 'tcp', '--dport', '--flush', '-j', 'X']), /for --dport .*needs a value/)
    refused(() => saveForm(['-j', '--flush']), /for -j .*starts with '-'/)
    refused(() => saveForm(['-j', '!X']), /for -j in rule : contains a character/)
    refused(() => saveForm(['-j', 'A'.repeat(29)]), /longer than 28/)
    refused(() => saveForm(['-i', 'eth０', '-j', 'X']), /for -i .*non-ASCII/)
    refused(() => saveForm(['-p', 'icmp6x', '-j', 'X']), /not a known protocol/)
    refused(() => saveForm(['-p', 'tcp', '-F', '-j', 'X']), /command option/)
    refused(() => saveForm(['-m', 'comment', '--comment', 'a\nb', '-j', 'X']), /for --comment .*newline/)
    refused(() => saveForm(['-j', 'DNAT', '--to-destination', '10.0.0.1:80 -j ACCEPT']), /--to-destination/)
    for (const bad of HOSTILE) {
      refused(() => saveForm(['-s', bad, '-j', 'X']), /for -s in rule/)
      refused(() => saveForm(['-o', bad, '-j', 'X']), /for -o in rule/)
      refused(() => saveForm(['-j', bad]), /for -j in rule/)
    }
    expect(refused(() => saveForm(['-s', LONG, '-j', 'X']), /10000 chars/).length).toBeLessThan(200)
  })
  it('Tx refuses bad chains and specs before recording anything', () => {
    const tx = new Tx(new Ruleset(4))
    for (const bad of HOSTILE) {
      refused(() => tx.ensureChain('filter', bad), /iptables: refused chain name/)
      refused(() => tx.appendUnique('nat', bad, '-j ACCEPT'), /refused chain name/)
    }
    refused(() => tx.ensureChain('filter', 'ADMIN\n--flush'), /refused chain name "ADMIN\\n--flush" in table filter : contains a newline/)
    refused(() => tx.appendUnique('nat', 'CNI-DN-x', '-p tcp\n--flush\n# -j X'), /refused token "tcp\\n--flush\\n#" in rule for chain CNI-DN-x : contains a newline/)
    refused(() => tx.appendUnique('nat', 'CNI-DN-x', '-j ACCEPT --flush'), /in rule for chain CNI-DN-x : is an iptables command option/)
    refused(() => tx.appendUnique('nat', 'CNI-DN-x', '-m foo --bar "x" -j A'), /only --comment/)
    refused(() => tx.deleteRule('bogus', 'X', '-j A'), /refused table/)
    expect(tx.empty).toBe(true)
    expect(tx.restoreInput()).toBe('')
  })
})

describe('ip batch writer', () => {
  it('renders good commands as before', () => {
    expect(renderBatch([cmdAddrAdd('eth0', '10.1.0.5/24'), cmdLinkSet('eth0', 'up'), cmdVethAdd('veth1', 'eth0', '/var/run/netns/x', {mtu: 1500, txqlen: 0})])).toBe(
      'addr add 10.1.0.5/24 dev eth0\nlink set dev eth0 up\nlink add name veth1 txqueuelen 0 mtu 1500 type veth peer name eth0 txqueuelen 0 mtu 1500 netns /var/run/netns/x\n',
    )
  })
  it('refuses hostile tokens in any position, the whole batch', () => {
    for (const bad of HOSTILE) {
      refused(() => renderBatch([['link', 'set', 'dev', 'eth0', 'up'], ['link', 'set', 'dev', bad, 'up']]), /^ctrnet: ip: refused token/)
      refused(() => cmdLinkSet(bad, 'up'), /invalid interface name/)
    }
    refused(() => renderBatch([['link', 'set', 'dev', 'eth0\nlink del lo']]), /refused token "eth0\\nlink del lo" in command "link set" : contains a newline/)
    refused(() => renderBatch([['link', 'set', 'dev', 'eth0', 'mtu', '1x']]), /for mtu/)
    refused(() => renderBatch([['link', 'set', 'dev', 'eth0', 'address', 'zz']]), /for address .*MAC/)
    refused(() => renderBatch([['route', 'add', '10.0.0.0/8', 'via', '10.0.0.300']]), /for via/)
    refused(() => renderBatch([['-force', 'link', 'del', 'x']]), /starts with '-'/)
    refused(() => cmdAddrAdd('eth0', '10.0.0.1/24\n--flush'), /invalid CIDR/)
  })
})

describe('nft writer', () => {
  it('renders the spoof-check script as before', () => {
    expect(
      renderNft([
        ['add', 'chain', 'bridge', 'nat', 'PREROUTING', nftBaseChain('filter', 'prerouting', -300, 'accept')],
        ['add', 'rule', 'bridge', 'nat', 'PREROUTING', 'iifname', nftQuoted('veth1'), 'jump', 'c', 'comment', nftQuoted('macspoofchk-c-eth0')],
        ['delete', 'rule', 'bridge', 'nat', 'PREROUTING', 'handle', 7],
      ]),
    ).toBe(
      'add chain bridge nat PREROUTING { type filter hook prerouting priority -300; policy accept; }\n' +
        'add rule bridge nat PREROUTING iifname "veth1" jump c comment "macspoofchk-c-eth0"\n' +
        'delete rule bridge nat PREROUTING handle 7\n',
    )
  })
  it('refuses hostile words, quoted values and chain specs', () => {
    for (const bad of HOSTILE) {
      refused(() => renderNft([['add', 'table', 'bridge', 'nat'], ['add', 'chain', 'bridge', 'nat', bad]]), /^ctrnet: nft: refused token/)
      refused(() => renderNft([['add', 'rule', 'bridge', 'nat', 'X', 'iifname', nftQuoted(bad)]]), /nft: refused quoted value/)
    }
    refused(() => renderNft([['add', 'chain', 'bridge', 'nat', 'P', nftBaseChain('filter', 'prerouting', 1.5, 'accept')]]), /priority/)
    refused(() => renderNft([['flush', 'ruleset'], ['delete', 'rule', 'bridge', 'nat', 'P', 'handle', -1]]), /non-negative/)
    refused(() => renderNft([['include', '/etc/passwd']]), /not an nft command/)
  })
})

describe('sysctl writer', () => {
  it('accepts keys under net/ (interface names included) and list values with single spaces', () => {
    expect(() => assertSysctlKey('net/ipv4/conf/eth0.100/route_localnet')).not.toThrow()
    expect(sysctlKeyFromDotted('net.ipv4.conf.eth0.route_localnet')).toBe('net/ipv4/conf/eth0/route_localnet')
    expect(() => assertSysctlValue('net/ipv4/ping_group_range', '0 2147483647')).not.toThrow()
    expect(() => assertSysctlValue('net/ipv6/conf/all/use_tempaddr', '-1')).not.toThrow()
  })
  it('refuses keys outside net/, traversal, and values with newlines, NUL or extra spaces', () => {
    for (const k of ['kernel/core_pattern', 'net/../kernel/x', 'net/ipv4/./x', 'net/ipv4\n/x', 'net/ipv4/conf/-x/y', 'net', LONG]) {
      refused(() => assertSysctlKey(k), /sysctl: invalid net sysctl key/)
    }
    refused(() => sysctlKeyFromDotted('net.ipv4..x'), /invalid net sysctl key/)
    refused(() => assertSysctlValue('net/ipv4/conf/all/arp_ignore', '1\n0'), /refused value "1\\n0" for net\/ipv4\/conf\/all\/arp_ignore : contains a newline/)
    refused(() => assertSysctlValue('net/ipv4/conf/all/arp_ignore', '1 0'), /whitespace/)
    refused(() => assertSysctlValue('net/ipv4/ping_group_range', '0  1'), /more than one space/)
    refused(() => assertSysctlValue('net/ipv4/ping_group_range', '0\t1'), /control character|whitespace/)
    for (const bad of HOSTILE.filter((b) => b !== '' && b !== '-j' && b !== '--flush')) refused(() => assertSysctlValue('net/ipv4/ip_forward', bad), /sysctl: refused value/)
  })
})

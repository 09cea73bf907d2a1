/**
 * Issue 22 item 7 through the real CLI on the nftables backend, with real
 * traffic, in two settings:
 *
 *  (a) a host WITHOUT iptables: the CLI's PATH hides every iptables* and
 *      ip6tables* program (firewall-lib's pathHiding), `network create`
 *      without --firewall-backend (auto) writes nftables;
 *  (b) a host WITH iptables, networks created with `--firewall-backend
 *      nftables`: iptables-save and ip6tables-save stay as they were, not a
 *      rule per container.
 *
 * In each: published ports reach their container from a neighbour on the
 * host's link, from the host itself and from a sibling (hairpin); containers
 * go out masqueraded; icc=false isolates the containers of a bridge from each
 * other but not from the outside or their published ports; the neighbour, which
 * routes the subnets via the host, reaches published ports only, everything on
 * a gateway_mode_ipv4=routed network; after `cni del` of every container and
 * `network rm`, `nft list ruleset` holds nothing of the networks.
 *
 * The host, its neighbour and the containers: firewall-lib.ts (Host).
 */
import {spawnSync} from 'node:child_process'
import {readdirSync} from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {useNetnsCleanup} from '../helpers/netns.js'
import {HOST_IP, Host, NEIGHBOUR_IP, NO_IPTABLES, hello, must, pathHiding, ping, tcp} from './firewall-lib.js'

useNetnsCleanup(afterAll)

/** The rules of an iptables-save text, and its chains with their policies (counters left out). */
const rulesOf = (text: string) => text.split('\n').filter((l) => l.startsWith('-A '))
const policiesOf = (text: string) => text.split('\n').filter((l) => l.startsWith(':')).map((l) => l.replace(/ \[\d+:\d+\]$/, ''))
const MARK_ACCEPT = '-A FORWARD -m mark --mark 0x10000000/0x10000000 -m comment --comment "ctrnet: accepted in nftables table inet ctrnet" -j ACCEPT'

const NETWORKS = {
  h22pub: ['-o', 'com.docker.network.bridge.name=h22pub0', '--subnet', '10.251.2.0/24'],
  h22iso: ['-o', 'icc=false', '-o', 'com.docker.network.bridge.name=h22iso0', '--subnet', '10.251.1.0/24'],
  h22rt: ['-o', 'com.docker.network.bridge.gateway_mode_ipv4=routed', '-o', 'com.docker.network.bridge.name=h22rt0', '--subnet', '10.251.3.0/24'],
}
const PORTS = [8081, 8082, 8083, 8084]

const SETTINGS = [
  {kind: 'a host without iptables, --firewall-backend auto', prefix: 'h22a', noIptables: true, flag: []},
  {kind: 'a host with iptables, --firewall-backend nftables', prefix: 'h22b', noIptables: false, flag: ['--firewall-backend', 'nftables']},
]

for (const s of SETTINGS) {
  describe.sequential(`nftables: ${s.kind}`, () => {
    const h = new Host(s.prefix, undefined, {CTRNET_FIREWALL_BACKEND: ''})
    let before6 = ''
    const ruleset = () => must('ip', ['netns', 'exec', h.ns, 'nft', 'list', 'ruleset'])

    beforeAll(async () => {
      await h.setup()
      before6 = h.iptablesSave('ip6tables-save')
      if (s.noIptables) h.env.PATH = pathHiding(h.base, 'no-iptables', NO_IPTABLES)
      for (const [name, args] of Object.entries(NETWORKS)) h.ok(['network', 'create', ...s.flag, ...args, name])
      await h.container('p1', 'h22pub', ['8083:80/tcp'])
      await h.container('p2', 'h22pub', ['8084:80/tcp'])
      await h.container('i1', 'h22iso', ['8081:80/tcp'])
      await h.container('i2', 'h22iso', ['8082:80/tcp'])
      await h.container('r1', 'h22rt')
      await h.settle(['p1', 'p2', 'i1', 'i2', 'r1'])
    }, 120_000)
    afterAll(() => h.teardown())

    it('every network is on nftables; the containers\' rules are in nft', () => {
      for (const name of Object.keys(NETWORKS)) {
        const c = h.conflist(name)
        expect(c.plugins.find((p) => p.type === 'bridge')).toMatchObject({ipMasq: true, ipMasqBackend: 'nftables'})
        expect(c.plugins.find((p) => p.type === 'portmap')).toMatchObject({backend: 'nftables'})
      }
      if (s.noIptables) {
        // the simulation holds: the CLI's PATH has nft and no iptables program, iptables-save does not run with it
        expect(readdirSync(h.env.PATH!)).toContain('nft')
        expect(readdirSync(h.env.PATH!).filter((n) => NO_IPTABLES.test(n))).toEqual([])
        const r = spawnSync('ip', ['netns', 'exec', h.ns, 'iptables-save'], {env: {...process.env, PATH: h.env.PATH}, encoding: 'utf8'})
        expect(r.status, r.stdout).not.toBe(0)
      }
      const rs = ruleset()
      expect(rs).toContain(`tcp dport 8083 dnat to ${h.c('p1').ip}:80`)
      expect(rs).toContain(`tcp dport 8081 dnat to ${h.c('i1').ip}:80`)
      expect(rs).toMatch(new RegExp(`ip saddr ${h.c('p2').ip.replace(/\./g, '\\.')} ip daddr != 10\\.251\\.2\\.0/24 masquerade`))
    })

    it('iptables and ip6tables hold not a rule of any container, nor of the networks', () => {
      const v4 = h.iptablesSave()
      const v6 = h.iptablesSave('ip6tables-save')
      for (const text of [v4, v6]) {
        for (const c of h.containers.values()) expect(text).not.toContain(c.ip)
        for (const p of PORTS) expect(text).not.toContain(String(p))
        expect(text).not.toMatch(/10\.251\.|h22(pub|iso|rt)0|CNI-/)
      }
      // where ctrnet sees iptables, the one thing of ctrnet's there: the nftables backend's generic accept
      // of its mark, one per family (docs/firewall.md: a FORWARD policy DROP), nothing per network or container
      const generic = s.noIptables ? [] : [MARK_ACCEPT]
      expect(rulesOf(v4)).toEqual([...rulesOf(h.before), ...generic])
      expect(rulesOf(v6)).toEqual([...rulesOf(before6), ...generic])
    })

    it('a published port reaches its container from a neighbour, from the host and from a sibling (hairpin)', () => {
      const [p1, p2] = [h.c('p1'), h.c('p2')]
      // the neighbour's address reaches the container as it is (DNAT only)
      expect(hello(h.neighbour, HOST_IP, 8083)).toBe(`hi p1 ${NEIGHBOUR_IP}`)
      expect(hello(h.neighbour, HOST_IP, 8084)).toBe(`hi p2 ${NEIGHBOUR_IP}`)
      expect(hello(h.ns, HOST_IP, 8083)).toMatch(/^hi p1 /)
      expect(hello(h.ns, '127.0.0.1', 8084)).toMatch(/^hi p2 /)
      // a sibling, and the container itself, through the host's address: masqueraded to the bridge's
      expect(hello(p2.ns, HOST_IP, 8083)).toBe('hi p1 10.251.2.1')
      expect(hello(p1.ns, HOST_IP, 8083)).toBe('hi p1 10.251.2.1')
      expect(hello(p1.ns, HOST_IP, 8084)).toBe('hi p2 10.251.2.1')
      // and directly on the bridge
      expect(hello(p1.ns, p2.ip, 80)).toBe(`hi p2 ${p1.ip}`)
    })

    it('a container goes out masqueraded: the outside sees the host\'s address', () => {
      for (const n of ['p1', 'p2', 'i1']) expect(hello(h.c(n).ns, NEIGHBOUR_IP, 9000)).toBe(`hi neighbour ${HOST_IP}`)
    })

    for (const brnf of [true, false]) {
      it(`icc=false: no ping or tcp between the containers; the outside and their published ports work (bridge-nf-call-iptables=${brnf ? 1 : 0})`, () => {
        h.setBrNetfilter(brnf)
        try {
          const [i1, i2] = [h.c('i1'), h.c('i2')]
          expect(ping(i1.ns, i2.ip)).toBe(false)
          expect(tcp(i1.ns, i2.ip, 80)).toBe(false)
          expect(tcp(i2.ns, i1.ip, 80)).toBe(false)
          expect(ping(i1.ns, '10.251.1.1')).toBe(true)
          expect(hello(i1.ns, NEIGHBOUR_IP, 9000)).toBe(`hi neighbour ${HOST_IP}`)
          expect(hello(i2.ns, NEIGHBOUR_IP, 9000)).toBe(`hi neighbour ${HOST_IP}`)
          expect(hello(h.neighbour, HOST_IP, 8081)).toBe(`hi i1 ${NEIGHBOUR_IP}`)
          expect(hello(h.neighbour, HOST_IP, 8082)).toBe(`hi i2 ${NEIGHBOUR_IP}`)
          expect(hello(h.ns, HOST_IP, 8082)).toMatch(/^hi i2 /)
          // a same-bridge network keeps its containers talking
          expect(tcp(h.c('p1').ns, h.c('p2').ip, 80)).toBe(true)
        } finally {
          h.setBrNetfilter(true)
        }
      })
    }

    it('a neighbour routing the subnets via the host reaches published ports only (published), everything (routed)', () => {
      const [p1, p2, r1] = [h.c('p1'), h.c('p2'), h.c('r1')]
      expect(tcp(h.neighbour, HOST_IP, 8083)).toBe(true)
      // port 80 directly, without the host's DNAT: unpublished
      expect(tcp(h.neighbour, p1.ip, 80)).toBe(false)
      expect(tcp(h.neighbour, p2.ip, 80)).toBe(false)
      expect(ping(h.neighbour, p1.ip)).toBe(false)
      expect(ping(h.neighbour, p2.ip)).toBe(false)
      expect(tcp(h.neighbour, h.c('i1').ip, 80)).toBe(false)
      expect(ping(h.neighbour, h.c('i2').ip)).toBe(false)
      expect(hello(h.neighbour, r1.ip, 80)).toBe(`hi r1 ${NEIGHBOUR_IP}`)
      expect(ping(h.neighbour, r1.ip)).toBe(true)
      // the containers' own connections, and the host's own traffic, are unaffected
      expect(tcp(p2.ns, NEIGHBOUR_IP, 9000)).toBe(true)
      expect(tcp(r1.ns, NEIGHBOUR_IP, 9000)).toBe(true)
      expect(tcp(h.ns, p1.ip, 80)).toBe(true)
      expect(tcp(h.ns, p2.ip, 80)).toBe(true)
    })

    it('cni del of every container and network rm leave nothing of the networks in nft, iptables untouched', () => {
      h.delAll()
      expect(tcp(h.neighbour, HOST_IP, 8083)).toBe(false)
      expect(ruleset()).toMatch(/"h22iso0"/) // the bridges' rules outlive their containers, until network rm
      h.ok(['network', 'rm', ...Object.keys(NETWORKS)])
      const rs = ruleset()
      for (const c of h.containers.values()) expect(rs).not.toContain(c.ip)
      for (const p of PORTS) expect(rs).not.toContain(String(p))
      expect(rs).not.toMatch(/10\.251\.|h22(pub|iso|rt)0|h22[ab]-|elements|dnat to|\bmasquerade\b/)
      // only the shared tables, chains and sets remain: no rule with a comment (each container's rules carry its id), empty chains
      expect(rs.split('\n').filter((l) => l.includes('comment "') && !/^\s*comment "/.test(l))).toEqual([])
      for (const chain of ['masq_checks', 'hostports', 'hostip_hostports', 'masquerading', 'CNI-ADMIN']) {
        expect(rs).toMatch(new RegExp(`\\bchain ${chain} \\{\\n(\\s*(comment "[^"]*"|type [^\\n]*; policy accept;)\\n)?\\s*\\}`))
      }
      // the generic accept went with the last bridge; the rules are as before (iptables-nft keeps the
      // filter table its -A created, with empty built-in chains at their default policy ACCEPT)
      for (const [now, then] of [[h.iptablesSave(), h.before], [h.iptablesSave('ip6tables-save'), before6]] as const) {
        expect(rulesOf(now)).toEqual(rulesOf(then))
        expect(policiesOf(now).filter((p) => !policiesOf(then).includes(p) && !/^:(INPUT|FORWARD|OUTPUT) ACCEPT$/.test(p))).toEqual([])
      }
    })
  })
}

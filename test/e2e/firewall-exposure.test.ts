/**
 * Issue 22 on the iptables backend, with real traffic: `network create -o
 * icc=false` isolates the containers of a bridge from each other (ping, tcp)
 * with and without br_netfilter, while the gateway, the outside and their
 * published ports stay reachable; a neighbour that routes the subnets via the
 * host reaches published ports only (everything with gateway_mode_ipv4=routed);
 * all of it holds under `iptables -P FORWARD DROP` too; `network rm` leaves
 * no rule naming the bridge.
 *
 * One throwaway "host" netns per FORWARD policy (h22i-*), the CLI run inside
 * it (`cni add/del`, `network create/rm`) with its own config, cache and
 * /var/lib; a neighbour netns N on the host's link (10.250.0.0/24) with a
 * route to 10.251.0.0/16 via the host; container netns with a TCP server on
 * port 80 each.
 */
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {netnsPath, useNetnsCleanup} from '../helpers/netns.js'
import {HOST_IP, Host, NEIGHBOUR_IP, must, ping, tcp} from './firewall-lib.js'

useNetnsCleanup(afterAll)

for (const policy of ['ACCEPT', 'DROP'] as const) {
  describe.sequential(`iptables: isolation, exposure and network rm (FORWARD policy ${policy})`, () => {
    const h = new Host('h22i', policy)
    beforeAll(async () => {
      await h.setup()
      h.ok(['network', 'create', 'h22iso', '-o', 'icc=false', '-o', 'com.docker.network.bridge.name=h22iso0', '--subnet', '10.251.1.0/24'])
      h.ok(['network', 'create', 'h22pub', '-o', 'com.docker.network.bridge.name=h22pub0', '--subnet', '10.251.2.0/24'])
      h.ok(['network', 'create', 'h22rt', '-o', 'com.docker.network.bridge.gateway_mode_ipv4=routed', '-o', 'com.docker.network.bridge.name=h22rt0', '--subnet', '10.251.3.0/24'])
      await h.container('i1', 'h22iso', ['8081:80/tcp'])
      await h.container('i2', 'h22iso', ['8082:80/tcp'])
      await h.container('p1', 'h22pub', ['8083:80/tcp'])
      await h.container('p2', 'h22pub')
      await h.container('r1', 'h22rt')
      await h.settle(['i1', 'i2', 'p1', 'p2', 'r1'])
    }, 120_000)
    afterAll(() => h.teardown())

    it('icc=false writes ingressPolicy "isolated" (no warning); routed is recorded on the firewall entry', () => {
      expect(h.conflist('h22iso').plugins.find((p) => p.type === 'firewall')).toEqual({type: 'firewall', ingressPolicy: 'isolated'})
      expect(h.conflist('h22pub').plugins.find((p) => p.type === 'firewall')).toEqual({type: 'firewall', ingressPolicy: 'same-bridge'})
      expect(h.conflist('h22rt').plugins.find((p) => p.type === 'firewall')).toEqual({type: 'firewall', ingressPolicy: 'same-bridge', gatewayModeIPv4: 'routed'})
      // the container's bridge port is isolated; CHECK agrees
      const ports = must('ip', ['-n', h.ns, '-d', '-j', 'link', 'show', 'master', 'h22iso0'])
      const isolated = (JSON.parse(ports) as Array<{linkinfo?: {info_slave_data?: {isolated?: boolean}}}>).map((l) => l.linkinfo?.info_slave_data?.isolated)
      expect(isolated).toEqual([true, true])
      expect(h.cli(['cni', 'check', 'h22iso', netnsPath(h.c('i1').ns), '--container-id', 'h22i-i1', '-p', '8081:80/tcp']).code).toBe(0)
    })

    for (const brnf of [true, false]) {
      it(`icc=false: no ping or tcp between the containers, gateway, outside and published ports work (bridge-nf-call-iptables=${brnf ? 1 : 0})`, () => {
        h.setBrNetfilter(brnf)
        const [i1, i2] = [h.c('i1'), h.c('i2')]
        expect(ping(i1.ns, i2.ip)).toBe(false)
        expect(tcp(i1.ns, i2.ip, 80)).toBe(false)
        expect(tcp(i2.ns, i1.ip, 80)).toBe(false)
        expect(ping(i1.ns, '10.251.1.1')).toBe(true)
        expect(tcp(i1.ns, NEIGHBOUR_IP, 9000)).toBe(true)
        expect(tcp(i2.ns, NEIGHBOUR_IP, 9000)).toBe(true)
        expect(tcp(h.neighbour, HOST_IP, 8081)).toBe(true)
        expect(tcp(h.neighbour, HOST_IP, 8082)).toBe(true)
        // a same-bridge network keeps its containers talking
        expect(tcp(h.c('p1').ns, h.c('p2').ip, 80)).toBe(true)
        h.setBrNetfilter(true)
      })
    }

    it('a neighbour routing the subnets via the host reaches published ports only (published), everything (routed)', () => {
      const [p1, p2, r1] = [h.c('p1'), h.c('p2'), h.c('r1')]
      expect(tcp(h.neighbour, HOST_IP, 8083)).toBe(true)
      expect(tcp(h.neighbour, p1.ip, 80)).toBe(false)
      expect(tcp(h.neighbour, p2.ip, 80)).toBe(false)
      expect(ping(h.neighbour, p2.ip)).toBe(false)
      expect(tcp(h.neighbour, h.c('i1').ip, 80)).toBe(false)
      expect(tcp(h.neighbour, r1.ip, 80)).toBe(true)
      expect(ping(h.neighbour, r1.ip)).toBe(true)
      // the containers' own connections, and the host's own traffic, are unaffected
      expect(tcp(p2.ns, NEIGHBOUR_IP, 9000)).toBe(true)
      expect(tcp(r1.ns, NEIGHBOUR_IP, 9000)).toBe(true)
      expect(tcp(h.ns, p1.ip, 80)).toBe(true)
      expect(tcp(h.ns, p2.ip, 80)).toBe(true)
      // the FORWARD policy is never changed
      expect(h.iptablesSave()).toContain(`:FORWARD ${policy} `)
    })

    it('cni del + network rm leave no rule naming the bridges, nothing per container, and the rest as before', () => {
      h.delAll()
      const mid = h.iptablesSave()
      expect(mid).toMatch(/h22iso0/) // the bridges' rules outlive their containers
      h.ok(['network', 'rm', 'h22iso', 'h22pub', 'h22rt'])
      const after = h.iptablesSave()
      expect(after).not.toMatch(/h22(iso|pub|rt)0/)
      for (const c of h.containers.values()) expect(after).not.toContain(c.ip)
      const before = new Set(h.before.split('\n'))
      const added = after.split('\n').filter((l) => !before.has(l))
      // only shared chains, their jumps and RETURNs are left
      for (const l of added) expect(l).toMatch(/^(\*\w+|COMMIT|:[A-Z]+ (ACCEPT|DROP) \[0:0\]|:(CNI-|CTRNET-)\S+ - \[0:0\]|-A (FORWARD|CNI-FORWARD|CNI-ISOLATION-STAGE-[12]|CTRNET-FORWARD|POSTROUTING|PREROUTING|OUTPUT|CNI-HOSTPORT-MASQ|CNI-HOSTPORT-SETMARK) .*)$/)
      for (const l of added.filter((x) => x.startsWith('-A CNI-ISOLATION') || x.startsWith('-A CTRNET-'))) expect(l).toMatch(/-j RETURN$/)
    })
  })
}

import {describe, expect, it} from 'vitest'
import {attachRequestOfFlags} from '../../src/netconf/attach-request.js'
import {addToNetworksLabel, intentOf, removeFromNetworksLabel} from '../../src/netconf/labels.js'
import {type ObservedAttachment, type ObservedContainer, planReconcile} from '../../src/app/daemon/plan.js'
import {parseDuration} from '../../src/cli/duration.js'

describe('daemon intent from labels', () => {
  it('no ctrnet/networks label: not the daemon\'s business (nerdctl/networks alone is nerdctl\'s)', () => {
    expect(intentOf({'nerdctl/networks': '["a"]'})).toBeUndefined()
    expect(intentOf(undefined)).toBeUndefined()
  })
  it('names, and ctrnet/publish goes to the first network', () => {
    expect(intentOf({'ctrnet/networks': 'a,b', 'ctrnet/publish': '8080:80, 127.0.0.1:53:53/udp'})).toEqual({
      networks: [
        {network: 'a', aliases: [], publish: [{hostPort: 8080, containerPort: 80, protocol: 'tcp'}, {hostIP: '127.0.0.1', hostPort: 53, containerPort: 53, protocol: 'udp'}]},
        {network: 'b', aliases: [], publish: []},
      ],
    })
  })
  it('the JSON form with its fields; ctrnet/publish is added after the first entry\'s own', () => {
    const i = intentOf({'ctrnet/networks': '[{"network":"a","publish":["1:2"],"ip":"10.1.0.9","ifname":"eth3"},{"network":"b","ip6":"fd00::9"}]', 'ctrnet/publish': '3:4'})
    expect(i).toEqual({
      networks: [
        {network: 'a', aliases: [], ip: '10.1.0.9', ifname: 'eth3', publish: [{hostPort: 1, containerPort: 2, protocol: 'tcp'}, {hostPort: 3, containerPort: 4, protocol: 'tcp'}]},
        {network: 'b', aliases: [], ip6: 'fd00::9', publish: []},
      ],
    })
  })
  it('refuses, in one line naming the label, what does not parse; never throws', () => {
    const refused = (labels: Record<string, string>) => {
      const i = intentOf(labels)
      if (!i || !('refused' in i)) throw new Error(`accepted: ${JSON.stringify(i)}`)
      expect(i.refused).not.toMatch(/[\n\r]/)
      return i.refused
    }
    expect(refused({'ctrnet/networks': '[{"network":'})).toContain('label ctrnet/networks')
    expect(refused({'ctrnet/networks': 'a', 'ctrnet/publish': '80:80:80:80'})).toContain('label ctrnet/publish')
    expect(refused({'ctrnet/networks': 'a', 'ctrnet/publish': '99999:80'})).toContain('label ctrnet/publish')
    expect(refused({'ctrnet/networks': '[{"network":"a","publish":["8080:80\\n-j ACCEPT"]}]'})).toContain('label ctrnet/networks[0].publish[0]')
    expect(refused({'ctrnet/networks': 'a;rm -rf /'})).toContain('label ctrnet/networks')
    expect(refused({'ctrnet/networks': '[{"network":"a","ip":"fd00::1"}]'})).toContain('not an IPv4 address')
    expect(refused({'ctrnet/networks': '[{"network":"a","ip6":"10.0.0.1"}]'})).toContain('not an IPv6 address')
    expect(refused({'ctrnet/networks': 'a,a'})).toContain('twice')
    expect(refused({'ctrnet/networks': '', 'ctrnet/publish': '80:80'})).toContain('names no network')
  })
  it('a network that does not exist is not the parser\'s concern (the attach refuses it)', () => {
    expect(intentOf({'ctrnet/networks': 'nosuchnet'})).toEqual({networks: [{network: 'nosuchnet', aliases: [], publish: []}]})
  })
})

describe('network connect records itself in ctrnet/networks', () => {
  it('adds its entry in the JSON form, with the flags given; keeps the others as written; replaces its own', () => {
    expect(addToNetworksLabel(undefined, attachRequestOfFlags('a', {publish: ['8080:80'], ip: '10.1.0.9'}))).toBe('[{"network":"a","publish":["8080:80"],"ip":"10.1.0.9"}]')
    expect(addToNetworksLabel('x, y', {network: 'a', publish: []})).toBe('["x","y",{"network":"a"}]')
    expect(addToNetworksLabel('[{"network":"a","ip":"10.1.0.2"},"b"]', {network: 'a', ifname: 'eth5', ip6: 'fd00::5'})).toBe('["b",{"network":"a","ip6":"fd00::5","ifname":"eth5"}]')
    // what it writes reads back as the same intent
    const label = addToNetworksLabel('x', attachRequestOfFlags('a', {publish: ['127.0.0.1:8080:80/udp']}))
    expect(intentOf({'ctrnet/networks': label})).toEqual({
      networks: [
        {network: 'x', aliases: [], publish: []},
        {network: 'a', aliases: [], publish: [{hostIP: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'udp'}]},
      ],
    })
    // --alias goes into the entry and reads back
    const aliased = addToNetworksLabel(undefined, {network: 'a', aliases: ['api', 'api.internal']})
    expect(aliased).toBe('[{"network":"a","aliases":["api","api.internal"]}]')
    expect(intentOf({'ctrnet/networks': aliased})).toEqual({networks: [{network: 'a', aliases: ['api', 'api.internal'], publish: []}]})
  })
  it('disconnect removes its entry, in the form the label had; says when it was the first', () => {
    expect(removeFromNetworksLabel('[{"network":"a"}]', 'a')).toEqual({value: undefined, first: true})
    expect(removeFromNetworksLabel('a,b', 'b')).toEqual({value: 'a', first: false})
    expect(removeFromNetworksLabel('["x",{"network":"a","ip":"10.1.0.2"}]', 'x')).toEqual({value: '[{"network":"a","ip":"10.1.0.2"}]', first: true})
    expect(removeFromNetworksLabel('a,b', 'c')).toBeUndefined()
    expect(removeFromNetworksLabel(undefined, 'a')).toBeUndefined()
    expect(removeFromNetworksLabel('[{"network":', 'a')).toBeUndefined()
  })
})

const NOW = 1_000_000
const ctr = (id: string, over: Partial<ObservedContainer> = {}): ObservedContainer => ({namespace: 'ns', id, cid: `ns-${id}`, ...over})
const running = (pid: number) => ({status: 'RUNNING' as const, netns: `/proc/${pid}/ns/net`})
const att = (cid: string, network: string, netns: string | undefined, over: Partial<ObservedAttachment> = {}): ObservedAttachment => ({
  networkName: network,
  containerId: cid,
  ifName: 'eth0',
  netns,
  pending: false,
  inLiveNamedNetns: false,
  ...over,
})
const want = (...nets: string[]) => ({networks: nets.map((network) => ({network, publish: [], aliases: []}))})
const plan = (cs: ObservedContainer[], as: ObservedAttachment[], graceMs = 5000) => planReconcile(cs, as, {now: NOW, graceMs})

describe('daemon plan: desired vs actual', () => {
  it('attaches the missing networks of a running container, and only those', () => {
    const p = plan([ctr('a', {intent: want('n1', 'n2'), task: running(10)})], [att('ns-a', 'n1', '/proc/10/ns/net')])
    expect(p.adds.map((a) => a.intent.network)).toEqual(['n2'])
    expect(p.releases).toEqual([])
  })
  it('a journal entry (ADD not finished) does not count as attached', () => {
    const p = plan([ctr('a', {intent: want('n1'), task: running(10)})], [att('ns-a', 'n1', '/proc/10/ns/net', {pending: true})])
    expect(p.adds).toHaveLength(1)
    expect(p.releases).toEqual([])
  })
  it('never attaches without the ctrnet label, to a paused, created, stopped or host-netns task', () => {
    const p = plan(
      [
        ctr('nerdctl', {task: running(1)}),
        ctr('paused', {intent: want('n'), task: {status: 'PAUSED', netns: '/proc/2/ns/net'}}),
        ctr('created', {intent: want('n'), task: {status: 'CREATED'}}),
        ctr('stopped', {intent: want('n'), task: {status: 'STOPPED'}, stoppedSince: NOW}),
        ctr('hostnet', {intent: want('n'), task: {status: 'RUNNING'}}),
        ctr('notask', {intent: want('n'), stoppedSince: NOW}),
      ],
      [],
    )
    expect(p.adds).toEqual([])
  })
  it('a refused label is reported and attaches nothing', () => {
    const p = plan([ctr('bad', {intent: {refused: 'label ctrnet/publish : nope'}, task: running(3)})], [])
    expect(p.refusals).toEqual([{namespace: 'ns', id: 'bad', reason: 'label ctrnet/publish : nope'}])
    expect(p.adds).toEqual([])
  })
  it('releases the attachments of a gone container, whoever made them, but not those in a live named netns', () => {
    const p = plan([], [att('ns-gone', 'n', '/proc/7/ns/net'), att('ns-gone2', 'n', undefined, {pending: true}), att('cnitool-1', 'n', '/var/run/netns/x', {inLiveNamedNetns: true})])
    expect(p.releases.map((r) => [r.cid, r.reason])).toEqual([
      ['ns-gone', 'container gone'],
      ['ns-gone2', 'container gone'],
    ])
  })
  it('releases after the grace period only, for a stopped task or no task', () => {
    const cs = [
      ctr('young', {task: {status: 'STOPPED'}, stoppedSince: NOW - 4999}),
      ctr('old', {task: {status: 'STOPPED'}, stoppedSince: NOW - 5000}),
      ctr('notask', {stoppedSince: NOW - 6000}),
      ctr('unknown', {task: {status: 'STOPPED'}}),
    ]
    const p = plan(cs, cs.map((c) => att(c.cid, 'n', '/proc/9/ns/net')))
    expect(p.releases.map((r) => [r.cid, r.reason])).toEqual([
      ['ns-old', 'task stopped'],
      ['ns-notask', 'task stopped'],
    ])
    expect(plan(cs, cs.map((c) => att(c.cid, 'n', '/proc/9/ns/net')), 0).releases.map((r) => r.cid)).toEqual(['ns-young', 'ns-old', 'ns-notask'])
  })
  it('never races a task in transition (CREATED: nerdctl\'s createRuntime hook) nor a live one', () => {
    const cs = [ctr('c', {task: {status: 'CREATED'}}), ctr('p', {task: {status: 'PAUSING'}}), ctr('r', {task: running(5)}), ctr('h', {task: {status: 'RUNNING'}})]
    expect(plan(cs, [att('ns-c', 'n', '/proc/4/ns/net'), att('ns-p', 'n', '/proc/4/ns/net'), att('ns-r', 'n', '/proc/5/ns/net'), att('ns-h', 'n', '/proc/6/ns/net')], 0).releases).toEqual([])
  })
  it('a restarted task: the old netns is released and the intent attached in the new one', () => {
    const p = plan([ctr('a', {intent: want('n'), task: running(20)})], [att('ns-a', 'n', '/proc/10/ns/net')])
    expect(p.releases).toEqual([{cid: 'ns-a', network: 'n', ifName: 'eth0', netns: '/proc/10/ns/net', reason: 'task replaced'}])
    expect(p.adds.map((a) => [a.cid, a.intent.network])).toEqual([['ns-a', 'n']])
  })
})

describe('duration flags', () => {
  it('takes ms, s, m, h', () => {
    expect(parseDuration('500ms', '--grace')).toBe(500)
    expect(parseDuration('5s', '--grace')).toBe(5000)
    expect(parseDuration('0s', '--grace')).toBe(0)
    expect(parseDuration('2m', '--grace')).toBe(120_000)
    expect(parseDuration('1h', '--grace')).toBe(3_600_000)
  })
  it('refuses anything else, naming the flag', () => {
    for (const bad of ['5', '5x', '-1s', '1.5s', ' 5s', '5s\n', '']) expect(() => parseDuration(bad, '--grace')).toThrow(/^--grace : /)
  })
})

import {describe, expect, it} from 'vitest'
import type {Attachment} from '../../src/libcni/cache.js'
import {portConflict} from '../../src/app/ports.js'

const entry = (containerId: string, portMappings: unknown, over: Partial<Attachment> = {}): Attachment => ({
  networkName: 'n',
  containerId,
  ifName: 'eth0',
  netns: `/proc/1/ns/net`,
  capabilityArgs: {portMappings},
  configBytes: Buffer.alloc(0),
  pending: false,
  ...over,
})
const me = {containerId: 'ns-me', netns: '/proc/2/ns/net'}
const tcp = (hostPort: number, hostIP?: string) => ({hostPort, containerPort: 80, protocol: 'tcp' as const, ...(hostIP ? {hostIP} : {})})
/** The conflict portConflict reports: which of the wanted mappings, held by which attachment. */
const held = (mapping: ReturnType<typeof tcp> | {hostPort: number; containerPort: number; protocol: 'tcp' | 'udp' | 'sctp'}, containerId: string, networkName = 'n') => ({mapping, holder: {networkName, containerId, ifName: 'eth0'}})

describe('published host ports', () => {
  it('a host port another attachment publishes is taken, whoever made it (cache or journal entry)', () => {
    const owner = entry('ns-owner', [{hostPort: 8080, containerPort: 80, protocol: 'tcp'}])
    expect(portConflict([tcp(8081), tcp(8080)], [owner], me)).toEqual({mapping: tcp(8080), holder: {networkName: 'n', containerId: 'ns-owner', ifName: 'eth0'}})
    expect(portConflict([tcp(8080)], [{...owner, pending: true}], me)).toEqual(held(tcp(8080), 'ns-owner'))
    expect(portConflict([tcp(8081)], [owner], me)).toBeUndefined()
  })
  it('another protocol is another port; the protocol defaults to tcp as portmap reads it', () => {
    expect(portConflict([{hostPort: 53, containerPort: 53, protocol: 'udp'}], [entry('ns-o', [{hostPort: 53, containerPort: 53, protocol: 'tcp'}])], me)).toBeUndefined()
    expect(portConflict([tcp(53)], [entry('ns-o', [{hostPort: 53, containerPort: 53}])], me)).toEqual(held(tcp(53), 'ns-o'))
    expect(portConflict([tcp(53)], [entry('ns-o', [{hostPort: 53, containerPort: 53, protocol: 'TCP'}])], me)).toEqual(held(tcp(53), 'ns-o'))
  })
  it('host addresses: none or 0.0.0.0 / :: overlap their family; two distinct addresses do not; families never', () => {
    const on = (ip?: string) => [entry('ns-o', [ip ? {hostPort: 80, containerPort: 80, protocol: 'tcp', hostIP: ip} : {hostPort: 80, containerPort: 80, protocol: 'tcp'}])]
    expect(portConflict([tcp(80, '127.0.0.1')], on(), me)).toEqual(held(tcp(80, '127.0.0.1'), 'ns-o'))
    expect(portConflict([tcp(80)], on('127.0.0.1'), me)).toEqual(held(tcp(80), 'ns-o'))
    expect(portConflict([tcp(80, '127.0.0.1')], on('0.0.0.0'), me)).toEqual(held(tcp(80, '127.0.0.1'), 'ns-o'))
    expect(portConflict([tcp(80, '127.0.0.1')], on('127.0.0.1'), me)).toEqual(held(tcp(80, '127.0.0.1'), 'ns-o'))
    expect(portConflict([tcp(80, '127.0.0.1')], on('127.0.0.2'), me)).toBeUndefined()
    expect(portConflict([tcp(80, '::1')], on('0.0.0.0'), me)).toBeUndefined()
    expect(portConflict([tcp(80, '::1')], on('::'), me)).toEqual(held(tcp(80, '::1'), 'ns-o'))
    expect(portConflict([tcp(80, '::1')], on('0:0::1'), me)).toEqual(held(tcp(80, '::1'), 'ns-o'))
  })
  it('an earlier task of the same container does not hold its ports; the same task on another network does', () => {
    const old = entry('ns-me', [tcp(8080)], {netns: '/proc/1/ns/net'})
    expect(portConflict([tcp(8080)], [old], me)).toBeUndefined()
    expect(portConflict([tcp(8080)], [{...old, netns: me.netns, networkName: 'other'}], me)).toEqual(held(tcp(8080), 'ns-me', 'other'))
  })
  it('entries whose port mappings do not read as such hold nothing, and never throw', () => {
    const odd = [entry('a', undefined), entry('b', 'x'), entry('c', [null, 5, {hostPort: '8080'}]), entry('d', [{hostPort: 8080, hostIP: 7}], {capabilityArgs: undefined})]
    expect(portConflict([tcp(8080)], odd, me)).toBeUndefined()
  })
})

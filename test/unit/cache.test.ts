/**
 * The one reader of the CNI cache and ctrnet's journal: decoded entries,
 * cache and journal merged with the cache entry winning, torn or foreign
 * files skipped, the stored format untouched.
 */
import {mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {type CacheRecord, entryPaths, listAttachments, readAttachment, removePending, writeCachedAttachment, writePending} from '../../src/libcni/cache.js'

let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ctrnet-cache-'))
})
afterEach(() => rmSync(dir, {recursive: true, force: true}))

const conf = {cniVersion: '1.0.0', name: 'net1', plugins: [{type: 'bridge'}]}
const confBytes = Buffer.from(JSON.stringify(conf, null, 2))
const record = (containerId: string, ifName: string, more: Partial<CacheRecord> = {}): CacheRecord => ({
  kind: 'cniCacheV1',
  containerId,
  config: confBytes.toString('base64'),
  ifName,
  networkName: 'net1',
  netns: `/var/run/netns/${containerId}`,
  ...more,
})
const key = (containerId: string, ifName = 'eth0') => ({networkName: 'net1', containerId, ifName})

describe('the cache reader', () => {
  it('decodes an entry: config bytes and conflist, netns, args, capability args, result', () => {
    const result = {cniVersion: '1.0.0', ips: [{address: '10.4.0.2/24'}]}
    writeCachedAttachment(dir, record('c1', 'eth0', {cniArgs: [['IgnoreUnknown', '1']], capabilityArgs: {ips: ['10.4.0.2']}, result}))
    const a = readAttachment(dir, key('c1'))!
    expect(a.pending).toBe(false)
    expect(a.configBytes.equals(confBytes)).toBe(true)
    expect(a.net?.conf).toEqual(conf)
    expect(a.net?.bytes.equals(confBytes)).toBe(true)
    expect(a).toMatchObject({networkName: 'net1', containerId: 'c1', ifName: 'eth0', netns: '/var/run/netns/c1', cniArgs: [['IgnoreUnknown', '1']], capabilityArgs: {ips: ['10.4.0.2']}, result})
  })

  it('keeps the stored format: libcni field order, base64 config', () => {
    writeCachedAttachment(dir, record('c1', 'eth0', {result: {cniVersion: '1.0.0'}}))
    const stored = readFileSync(entryPaths(dir, key('c1'))[0], 'utf8')
    expect(Object.keys(JSON.parse(stored))).toEqual(['kind', 'containerId', 'config', 'ifName', 'networkName', 'netns', 'result'])
  })

  it('merges the journal in: one attachment per key, the cache entry wins', () => {
    writeCachedAttachment(dir, record('c1', 'eth0', {netns: '/var/run/netns/cached'}))
    writePending(dir, record('c1', 'eth0', {netns: '/var/run/netns/pending'}))
    writePending(dir, record('c2', 'eth0'))
    writeCachedAttachment(dir, record('c3', 'eth1'))
    const all = listAttachments(dir)
    expect(all.map((a) => [a.containerId, a.ifName, a.pending, a.netns])).toEqual([
      ['c1', 'eth0', false, '/var/run/netns/cached'],
      ['c3', 'eth1', false, '/var/run/netns/c3'],
      ['c2', 'eth0', true, '/var/run/netns/c2'],
    ])
    expect(readAttachment(dir, key('c1'))?.netns).toBe('/var/run/netns/cached')
    expect(readAttachment(dir, key('c2'))?.pending).toBe(true)
    removePending(dir, key('c2'))
    expect(readAttachment(dir, key('c2'))).toBeUndefined()
  })

  it('filters by network and by container id', () => {
    writeCachedAttachment(dir, record('c1', 'eth0'))
    writePending(dir, record('c1', 'eth1'))
    writeCachedAttachment(dir, record('c2', 'eth0'))
    writeCachedAttachment(dir, {...record('c1', 'eth0'), networkName: 'net1-b'})
    expect(listAttachments(dir, {network: 'net1'}).map((a) => `${a.containerId}/${a.ifName}`)).toEqual(['c1/eth0', 'c2/eth0', 'c1/eth1'])
    expect(listAttachments(dir, {network: 'net1', containerId: 'c1'}).map((a) => a.ifName)).toEqual(['eth0', 'eth1'])
    expect(listAttachments(dir, {containerId: 'c1'}).map((a) => a.networkName)).toEqual(['net1-b', 'net1', 'net1']) // file name order
    expect(listAttachments(dir, {network: 'nope'})).toEqual([])
  })

  it('skips torn, foreign and misnamed files, and keeps an entry whose config is torn without its conflist', () => {
    const [results] = entryPaths(dir, key('x'))
    mkdirSync(join(results, '..'), {recursive: true})
    writeFileSync(join(results, '..', 'net1-torn-eth0'), '{"kind":"cniCacheV1","containerId":"torn"')
    writeFileSync(join(results, '..', 'net1-other-eth0'), JSON.stringify({kind: 'somethingElse', containerId: 'other', ifName: 'eth0', networkName: 'net1'}))
    writeFileSync(join(results, '..', 'net1-renamed-eth0'), JSON.stringify(record('c9', 'eth0')))
    writeCachedAttachment(dir, record('badconf', 'eth0', {config: Buffer.from('{"cniVersion":').toString('base64')}))
    writeCachedAttachment(dir, record('noconf', 'eth0', {config: ''}))
    const all = listAttachments(dir)
    expect(all.map((a) => a.containerId)).toEqual(['badconf', 'noconf'])
    expect(all[0].net).toBeUndefined()
    expect(all[0].configBytes.length).toBeGreaterThan(0)
    expect(all[1].net).toBeUndefined()
    expect(all[1].configBytes.length).toBe(0)
    expect(readAttachment(dir, key('torn'))).toBeUndefined()
  })

  it('answers nothing for a cache dir that does not exist', () => {
    expect(listAttachments(join(dir, 'absent'))).toEqual([])
    expect(readAttachment(join(dir, 'absent'), key('c1'))).toBeUndefined()
  })
})

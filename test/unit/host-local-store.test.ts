/**
 * host-local disk store: leases are written complete or not at all (temp +
 * fsync + link), and under the network's lock an empty/unparseable lease or
 * a leftover temp file is garbage that DEL, GC and ADD reclaim.
 */
import {afterAll, describe, expect, it} from 'vitest'
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {DiskStore, parseLeaseContent} from '../../src/plugins/host-local/store.js'
import {loadHostLocalConf} from '../../src/plugins/host-local/config.js'
import hostLocal, {hostLocalAdd, hostLocalDel} from '../../src/plugins/host-local/index.js'
import type {PluginNetConf, PluginRequest} from '../../src/plugins/types.js'

const root = mkdtempSync(join(tmpdir(), 'ctrnet-hls-'))
afterAll(() => rmSync(root, {recursive: true, force: true}))

let n = 0
/** A fresh data dir with network "snet" (10.9.0.0/24) and its store dir. */
function fresh(): {dataDir: string; dir: string; conf: PluginNetConf; store: DiskStore} {
  const dataDir = join(root, `d${n++}`)
  const dir = join(dataDir, 'snet')
  mkdirSync(dir, {recursive: true})
  const conf = {cniVersion: '1.1.0', name: 'snet', type: 'bridge', ipam: {type: 'host-local', dataDir, ranges: [[{subnet: '10.9.0.0/24'}]]}} as PluginNetConf
  return {dataDir, dir, conf, store: new DiskStore(dataDir, 'snet')}
}

const entries = (dir: string) => readdirSync(dir).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip.')).sort()

function gcReq(conf: PluginNetConf, valid: Array<{containerID: string; ifname: string}>): PluginRequest {
  return {
    command: 'GC',
    containerId: '',
    netns: '',
    ifName: '',
    cniArgs: '',
    args: [],
    cniPath: [],
    config: {...conf, 'cni.dev/valid-attachments': valid},
  } as unknown as PluginRequest
}

describe('lease content', () => {
  it('parses what writers write and refuses what they never write', () => {
    expect(parseLeaseContent('c1\r\neth0')).toEqual({containerId: 'c1', ifname: 'eth0'})
    expect(parseLeaseContent('c1')).toEqual({containerId: 'c1', ifname: undefined})
    expect(parseLeaseContent('c1\r\n')).toEqual({containerId: 'c1', ifname: undefined})
    for (const bad of ['', '   ', '\r\n', '\0\0\0\0', 'c1\0\r\neth0', 'a\r\nb\r\nc', 'a b\r\neth0']) {
      expect(parseLeaseContent(bad), JSON.stringify(bad)).toBeUndefined()
    }
  })
})

describe('DiskStore.reserve', () => {
  it('is no-replace: a taken address stays with its owner, and no temp file is left', async () => {
    const {dir, store} = fresh()
    await store.locked(() => {
      expect(store.reserve('a', 'eth0', '10.9.0.5', '0')).toBe(true)
      expect(store.reserve('b', 'eth0', '10.9.0.5', '0')).toBe(false)
    })
    expect(readFileSync(join(dir, '10.9.0.5'), 'utf8')).toBe('a\r\neth0')
    expect(statSync(join(dir, '10.9.0.5')).mode & 0o777).toBe(0o644)
    expect(statSync(join(dir, '10.9.0.5')).nlink).toBe(1) // the temp name is gone
    expect(readFileSync(join(dir, 'last_reserved_ip.0'), 'utf8')).toBe('10.9.0.5')
    expect(readdirSync(dir).sort()).toEqual(['10.9.0.5', 'last_reserved_ip.0', 'lock'])
  })

  it('is no-replace for a lease written by another writer (a legacy bare id too)', async () => {
    const {dir, store} = fresh()
    writeFileSync(join(dir, '10.9.0.6'), 'legacy')
    await store.locked(() => expect(store.reserve('b', 'eth0', '10.9.0.6', '0')).toBe(false))
    expect(readFileSync(join(dir, '10.9.0.6'), 'utf8')).toBe('legacy')
  })

  it('takes over an empty lease file (the caller holds the lock: nobody is writing it)', async () => {
    const {dir, store} = fresh()
    writeFileSync(join(dir, '10.9.0.7'), '')
    // reserve itself replaces garbage, even before any sweep
    expect(store.reserve('c', 'eth1', '10.9.0.7', '0')).toBe(true)
    expect(readFileSync(join(dir, '10.9.0.7'), 'utf8')).toBe('c\r\neth1')
    expect(entries(dir)).toEqual(['10.9.0.7'])
  })
})

describe('garbage under the lock', () => {
  it("ADD's sweep removes temp files by name and reads no lease (its cost does not grow with the leases); the next full sweep takes the rest", async () => {
    const {dir, store} = fresh()
    writeFileSync(join(dir, '10.9.0.10'), '')
    writeFileSync(join(dir, '.10.9.0.12.0123456789ab.tmp'), 'x\r\neth0')
    writeFileSync(join(dir, '10.9.0.13'), 'keep\r\neth0')
    await store.locked(() => undefined, {sweep: 'temp'})
    expect(entries(dir)).toEqual(['10.9.0.10', '10.9.0.13'])
    await store.locked(() => undefined)
    expect(entries(dir)).toEqual(['10.9.0.13'])
  })

  it('reclaims empty and unparseable lease files and leftover temp files, keeps real leases', async () => {
    const {dir, store} = fresh()
    writeFileSync(join(dir, '10.9.0.10'), '') // the reference killed between create and write
    writeFileSync(join(dir, '10.9.0.11'), Buffer.alloc(8)) // torn / zero-filled
    writeFileSync(join(dir, '.10.9.0.12.0123456789ab.tmp'), 'x\r\neth0') // a killed writer's temp file
    writeFileSync(join(dir, '.last_reserved_ip.0.abcdefabcdef.tmp'), '10.9.0.12')
    writeFileSync(join(dir, '10.9.0.13'), 'keep\r\neth0')
    writeFileSync(join(dir, '10.9.0.14'), 'old')
    const leases = await store.locked(() => store.leases())
    expect(leases.map((l) => l.ip).sort()).toEqual(['10.9.0.13', '10.9.0.14'])
    expect(entries(dir)).toEqual(['10.9.0.13', '10.9.0.14'])
    // a temp file's content never counts as a lease
    expect(await store.locked(() => store.findById('x', 'eth0'))).toBe(false)
  })

  it('DEL of any container reclaims an empty lease file', async () => {
    const {dir, conf} = fresh()
    writeFileSync(join(dir, '10.9.0.20'), '')
    await hostLocalDel(loadHostLocalConf(conf, []), 'nobody', 'eth0')
    expect(entries(dir)).toEqual([])
  })

  it('GC reclaims an empty lease file and a temp file, keeps valid leases, releases invalid ones', async () => {
    const {dir, conf} = fresh()
    writeFileSync(join(dir, '10.9.0.30'), '')
    writeFileSync(join(dir, '.10.9.0.31.00112233aabb.tmp'), '')
    writeFileSync(join(dir, '10.9.0.32'), 'live\r\neth0')
    writeFileSync(join(dir, '10.9.0.33'), 'dead\r\neth0')
    await hostLocal.gc!(gcReq(conf, [{containerID: 'live', ifname: 'eth0'}]), hostLocal.parse(conf, 'plugins[0]', {command: 'GC', containerId: '', ifName: '', args: []}))
    expect(entries(dir)).toEqual(['10.9.0.32'])
  })

  it('ADD allocates a garbage address again, in round-robin order', async () => {
    const {dir, conf} = fresh()
    writeFileSync(join(dir, '10.9.0.2'), '') // the first address of the range
    const r = await hostLocalAdd(loadHostLocalConf(conf, []), 'new', 'eth0')
    expect(r.ips?.[0].address).toBe('10.9.0.2/24')
    expect(readFileSync(join(dir, '10.9.0.2'), 'utf8')).toBe('new\r\neth0')
    expect(entries(dir)).toEqual(['10.9.0.2'])
  })
})

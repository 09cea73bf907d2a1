import {mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {defaultCreateOptions} from '../../src/netconf/render.js'
import {checkNamespace, configPathFor, listNetworks} from '../../src/netconf/store.js'
import {createNetworkLocked, ensureDefaultBridgeNetwork} from '../../src/netconf/create.js'
import {DEFAULT_BRIDGE_FILE} from './nerdctl-files.js'

let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'h1x-store-'))
})
afterEach(() => {
  rmSync(dir, {recursive: true, force: true})
})

describe('paths', () => {
  it('bridge at the top, others in the namespace folder', () => {
    expect(configPathFor('/etc/cni/net.d', 'default', 'bridge')).toBe('/etc/cni/net.d/nerdctl-bridge.conflist')
    expect(configPathFor('/etc/cni/net.d', 'k8s.io', 'mynet')).toBe('/etc/cni/net.d/k8s.io/nerdctl-mynet.conflist')
  })
  it('a namespace cannot escape the config dir', () => {
    for (const ns of ['..', '../x', 'a/b', '', '-a', 'a..b']) expect(() => checkNamespace(ns), ns).toThrow(/invalid containerd namespace/)
    expect(() => configPathFor('/d', '../etc', 'x1')).toThrow()
  })
})

describe('listNetworks', () => {
  it('sees <dir> and <dir>/<namespace> only, sorted by full path, with nerdctl metadata; skips broken files', () => {
    mkdirSync(join(dir, 'default'))
    mkdirSync(join(dir, 'other'))
    writeFileSync(join(dir, '10-containerd-net.conflist'), JSON.stringify({cniVersion: '1.0.0', name: 'containerd-net', plugins: [{type: 'bridge'}]}))
    writeFileSync(join(dir, 'nerdctl-bridge.conflist'), JSON.stringify({cniVersion: '1.0.0', name: 'bridge', nerdctlID: 'abc', plugins: [{type: 'bridge'}]}))
    writeFileSync(join(dir, '99-broken.conflist'), '{not json')
    writeFileSync(join(dir, 'old.conf'), JSON.stringify({cniVersion: '0.4.0', name: 'old', type: 'bridge'}))
    writeFileSync(join(dir, 'notes.txt'), 'ignored')
    writeFileSync(
      join(dir, 'default', 'nerdctl-mynet.conflist'),
      JSON.stringify({cniVersion: '1.0.0', name: 'mynet', nerdctlID: 'def', nerdctlLabels: {a: 'b'}, plugins: [{type: 'bridge'}]}),
    )
    writeFileSync(join(dir, 'other', 'nerdctl-hidden.conflist'), JSON.stringify({cniVersion: '1.0.0', name: 'hidden', plugins: [{type: 'bridge'}]}))
    const skipped: string[] = []
    const nets = listNetworks(dir, 'default', (f) => skipped.push(f))
    expect(nets.map((n) => n.name)).toEqual(['containerd-net', 'mynet', 'bridge', 'old'])
    expect(nets.map((n) => n.nerdctlID)).toEqual([undefined, 'def', 'abc', undefined])
    expect(nets[1]!.nerdctlLabels).toEqual({a: 'b'})
    expect(skipped).toEqual([join(dir, '99-broken.conflist')])
  })
  it('a wrongly typed nerdctlID or label drops both, as Go unmarshal does', () => {
    writeFileSync(join(dir, 'a.conflist'), JSON.stringify({cniVersion: '1.0.0', name: 'a1', nerdctlID: 5, plugins: [{type: 'x'}]}))
    writeFileSync(join(dir, 'b.conflist'), JSON.stringify({cniVersion: '1.0.0', name: 'b1', nerdctlID: 'i', nerdctlLabels: {x: 1}, plugins: [{type: 'x'}]}))
    expect(listNetworks(dir, 'default').map((n) => [n.nerdctlID, n.nerdctlLabels])).toEqual([
      [undefined, undefined],
      [undefined, undefined],
    ])
  })
  it('a missing dir lists nothing', () => {
    expect(listNetworks(join(dir, 'nope'), 'default')).toEqual([])
  })
})

describe('createNetworkLocked', () => {
  it('writes 0644 in the namespace folder, lock file 0600, no temp files', async () => {
    const res = await createNetworkLocked(dir, 'default', defaultCreateOptions('mynet', {subnets: ['10.123.0.0/16']}))
    expect(res).toMatchObject({name: 'mynet', created: true, file: join(dir, 'default', 'nerdctl-mynet.conflist')})
    expect(statSync(res.file).mode & 0o777).toBe(0o644 & ~process.umask())
    expect(statSync(join(dir, '.nerdctl.lock')).mode & 0o777).toBe(0o600)
    expect(readdirSync(join(dir, 'default'))).toEqual(['nerdctl-mynet.conflist'])
    expect(JSON.parse(readFileSync(res.file, 'utf8')).nerdctlID).toBe(res.id)
  })
  it('existing name: error, or the existing ID with ignoreExisting', async () => {
    const a = await createNetworkLocked(dir, 'default', defaultCreateOptions('dup', {subnets: ['10.124.0.0/16']}))
    await expect(createNetworkLocked(dir, 'default', defaultCreateOptions('dup'))).rejects.toThrow(/network with name dup already exists/)
    const b = await createNetworkLocked(dir, 'default', defaultCreateOptions('dup'), {ignoreExisting: true})
    expect(b).toMatchObject({id: a.id, created: false})
  })
  it('counts every visible network (macvlan, foreign) when allocating', async () => {
    writeFileSync(
      join(dir, '50-foreign.conflist'),
      JSON.stringify({cniVersion: '1.0.0', name: 'foreign', plugins: [{type: 'ptp', ipam: {type: 'host-local', ranges: [[{subnet: '10.4.1.0/24'}]]}}]}),
    )
    const mv = await createNetworkLocked(dir, 'default', defaultCreateOptions('mv', {driver: 'macvlan', options: ['parent=eth0']}))
    expect(JSON.parse(readFileSync(mv.file, 'utf8')).plugins[0].ipam.ranges[0][0].subnet).toBe('10.4.2.0/24')
    const br = await createNetworkLocked(dir, 'default', defaultCreateOptions('br'))
    expect(JSON.parse(readFileSync(br.file, 'utf8')).plugins[0].ipam.ranges[0][0].subnet).toBe('10.4.3.0/24')
  })
  it('20 concurrent creates in one process: 20 distinct subnets', async () => {
    const res = await Promise.all(Array.from({length: 20}, (_, i) => createNetworkLocked(dir, 'default', defaultCreateOptions(`c${i}`))))
    const subnets = res.map((r) => JSON.parse(readFileSync(r.file, 'utf8')).plugins[0].ipam.ranges[0][0].subnet)
    expect(new Set(subnets).size).toBe(20)
  })
  it('an invalid create writes nothing', async () => {
    await expect(createNetworkLocked(dir, 'default', defaultCreateOptions('bad', {subnets: ['10.0.0.1/8']}))).rejects.toThrow(/host bits/)
    expect(readdirSync(dir).filter((f) => f !== '.nerdctl.lock' && f !== 'default')).toEqual([])
    expect(listNetworks(dir, 'default')).toEqual([])
  })
})

describe('ensureDefaultBridgeNetwork', () => {
  it("writes nerdctl's exact file once", async () => {
    const a = await ensureDefaultBridgeNetwork(dir, 'default')
    expect(a).toMatchObject({name: 'bridge', created: true, file: join(dir, 'nerdctl-bridge.conflist')})
    expect(readFileSync(a.file, 'utf8')).toBe(DEFAULT_BRIDGE_FILE)
    const b = await ensureDefaultBridgeNetwork(dir, 'default')
    expect(b).toMatchObject({created: false, id: a.id})
  })
  it('concurrent calls create it once', async () => {
    const res = await Promise.all(Array.from({length: 5}, () => ensureDefaultBridgeNetwork(dir, 'default')))
    expect(res.filter((r) => r.created)).toHaveLength(1)
  })
  it('a network labelled nerdctl/default-network counts as the default', async () => {
    writeFileSync(
      join(dir, 'x.conflist'),
      JSON.stringify({cniVersion: '1.0.0', name: 'mydefault', nerdctlID: 'q', nerdctlLabels: {'nerdctl/default-network': 'true'}, plugins: [{type: 'bridge'}]}),
    )
    expect(await ensureDefaultBridgeNetwork(dir, 'default')).toMatchObject({created: false, name: 'mydefault'})
  })
})

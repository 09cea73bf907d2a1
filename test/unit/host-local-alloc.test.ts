import {describe, expect, it, afterAll} from 'vitest'
import {mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {allocate, MemoryStore, RangeIter} from '../../src/plugins/host-local/allocator.js'
import {canonicalizeRangeSet, loadHostLocalConf} from '../../src/plugins/host-local/config.js'
import {hostLocalAdd, hostLocalDel} from '../../src/plugins/host-local/index.js'
import type {PluginNetConf} from '../../src/plugins/types.js'

const set = (...r: Array<Record<string, string>>) => canonicalizeRangeSet(r)

function drain(s: ReturnType<typeof set>, last?: string, n = 100): string[] {
  const it = new RangeIter(s, last)
  const out: string[] = []
  for (let i = 0; i < n; i++) {
    const x = it.next()
    if (!x) break
    out.push(x.ip)
  }
  return out
}

describe('host-local range canonicalization (v1.1.1 Range.Canonicalize)', () => {
  it('defaults gateway to .1, start to .1 and end to broadcast-1 for IPv4', () => {
    const [r] = set({subnet: '10.1.2.0/24'})
    expect(r).toMatchObject({gateway: '10.1.2.1', rangeStart: '10.1.2.1', rangeEnd: '10.1.2.254'})
  })
  it('uses the last address for IPv6 (no broadcast)', () => {
    const [r] = set({subnet: 'fd00:1::/64'})
    expect(r).toMatchObject({gateway: 'fd00:1::1', rangeStart: 'fd00:1::1', rangeEnd: 'fd00:1::ffff:ffff:ffff:ffff'})
  })
  it('masks host bits of the subnet like net.ParseCIDR', () => {
    const [r] = set({subnet: '10.1.2.77/24'})
    expect(r.subnet).toMatchObject({ip: '10.1.2.0', prefix: 24})
  })
  it('rejects /31, /32 and out-of-subnet bounds, and overlapping ranges', () => {
    expect(() => set({subnet: '10.0.0.0/31'})).toThrow(/too small/)
    expect(() => set({subnet: '10.0.0.0/24', rangeStart: '10.0.1.5'})).toThrow(/RangeStart/)
    expect(() => set({subnet: '10.0.0.0/24', rangeEnd: '10.0.1.5'})).toThrow(/RangeEnd/)
    expect(() => set({subnet: '10.0.0.0/24'}, {subnet: '10.0.0.0/25'})).toThrow(/overlap/)
    expect(() => set({subnet: '10.0.0.0/24'}, {subnet: 'fd00::/64'})).toThrow(/mixed/)
  })
})

describe('host-local allocation order (RangeIter)', () => {
  it('starts at rangeStart and skips the gateway', () => {
    expect(drain(set({subnet: '10.0.0.0/29'}))).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6'])
  })
  it('resumes after the last reserved IP and wraps around, ending on it', () => {
    expect(drain(set({subnet: '10.0.0.0/29'}), '10.0.0.4')).toEqual(['10.0.0.5', '10.0.0.6', '10.0.0.2', '10.0.0.3', '10.0.0.4'])
  })
  it('ignores a last reserved IP outside the set', () => {
    expect(drain(set({subnet: '10.0.0.0/29'}), '192.168.0.9')[0]).toBe('10.0.0.2')
  })
  it('walks several ranges of a set in order, wrapping to the first', () => {
    const s = set({subnet: '10.0.0.0/29', rangeStart: '10.0.0.5'}, {subnet: '10.0.1.0/29', rangeEnd: '10.0.1.3'})
    expect(drain(s)).toEqual(['10.0.0.5', '10.0.0.6', '10.0.1.2', '10.0.1.3'])
    expect(drain(s, '10.0.1.2')).toEqual(['10.0.1.3', '10.0.0.5', '10.0.0.6', '10.0.1.2'])
  })
  it('skips a gateway in the middle of the range', () => {
    expect(drain(set({subnet: '10.0.0.0/29', gateway: '10.0.0.4'}))).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.5', '10.0.0.6'])
  })
  it('handles IPv6 increments across group boundaries', () => {
    const s = set({subnet: 'fd00::/64', rangeStart: 'fd00::fffe', rangeEnd: 'fd00::1:1'})
    expect(drain(s)).toEqual(['fd00::fffe', 'fd00::ffff', 'fd00::1:0', 'fd00::1:1'])
  })
})

describe('host-local allocate()', () => {
  it('reserves in order, records last_reserved_ip and content <id>\\r\\n<ifname>', () => {
    const st = new MemoryStore()
    const s = set({subnet: '10.0.0.0/24'})
    expect(allocate(s, 0, st, 'c1', 'eth0')).toEqual({address: '10.0.0.2/24', gateway: '10.0.0.1'})
    expect(allocate(s, 0, st, 'c2', 'eth0')).toEqual({address: '10.0.0.3/24', gateway: '10.0.0.1'})
    expect(st.files.get('10.0.0.2')).toBe('c1\r\neth0')
    expect(st.files.get('last_reserved_ip.0')).toBe('10.0.0.3')
  })
  it('does not hand out a released address again before the range wraps', () => {
    const st = new MemoryStore()
    const s = set({subnet: '10.0.0.0/24'})
    allocate(s, 0, st, 'c1', 'eth0')
    st.releaseById('c1', 'eth0')
    expect(allocate(s, 0, st, 'c2', 'eth0').address).toBe('10.0.0.3/24')
  })
  it('refuses a second address for the same id+ifname in one set', () => {
    const st = new MemoryStore()
    const s = set({subnet: '10.0.0.0/24'})
    allocate(s, 0, st, 'c1', 'eth0')
    expect(() => allocate(s, 0, st, 'c1', 'eth0')).toThrow(/duplicate allocation/)
    expect(allocate(s, 0, st, 'c1', 'eth1').address).toBe('10.0.0.3/24')
  })
  it('honours a requested IP, refusing the gateway, taken and foreign addresses', () => {
    const st = new MemoryStore()
    const s = set({subnet: '10.0.0.0/24'})
    expect(allocate(s, 0, st, 'c1', 'eth0', '10.0.0.77').address).toBe('10.0.0.77/24')
    expect(() => allocate(s, 0, st, 'c2', 'eth0', '10.0.0.77')).toThrow(/not available/)
    expect(() => allocate(s, 0, st, 'c2', 'eth0', '10.0.0.1')).toThrow(/gateway/)
    expect(() => allocate(s, 0, st, 'c2', 'eth0', '10.9.0.1')).toThrow(/not in range set/)
  })
  it('reports exhaustion', () => {
    const st = new MemoryStore()
    const s = set({subnet: '10.0.0.0/29', rangeStart: '10.0.0.5', rangeEnd: '10.0.0.6'})
    allocate(s, 0, st, 'a', 'eth0')
    allocate(s, 0, st, 'b', 'eth0')
    expect(() => allocate(s, 0, st, 'c', 'eth0')).toThrow(/no IP addresses available in range set: 10.0.0.5-10.0.0.6/)
  })
})

describe('host-local config loading', () => {
  const base = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}): PluginNetConf =>
    ({cniVersion: '1.0.0', name: 'n1', type: 'bridge', ipam: {type: 'host-local', ...ipam}, ...extra}) as PluginNetConf
  it('prepends the old-style subnet and runtime ipRanges', () => {
    const c = loadHostLocalConf(
      base({subnet: '10.0.0.0/24', ranges: [[{subnet: 'fd00::/64'}]]}, {runtimeConfig: {ipRanges: [[{subnet: '10.9.0.0/24'}]]}}),
      [],
    )
    expect(c.ranges.map((s) => s[0].subnet.ip)).toEqual(['10.9.0.0', '10.0.0.0', 'fd00::'])
    expect(c.dataDir).toBe('/var/lib/cni/networks')
  })
  it('collects requested IPs from CNI_ARGS, args.cni.ips and runtimeConfig.ips', () => {
    const c = loadHostLocalConf(
      base({ranges: [[{subnet: '10.0.0.0/24'}]]}, {args: {cni: {ips: ['10.0.0.8']}}, runtimeConfig: {ips: ['10.0.0.9/24']}}),
      [['IgnoreUnknown', '1'], ['IP', '10.0.0.7'], ['K8S_POD_NAME', 'x']],
    )
    expect(c.requested).toEqual(['10.0.0.7', '10.0.0.8', '10.0.0.9'])
  })
  it('rejects unknown CNI_ARGS without IgnoreUnknown, overlapping sets and no ranges', () => {
    expect(() => loadHostLocalConf(base({ranges: [[{subnet: '10.0.0.0/24'}]]}), [['FOO', '1']])).toThrow(/unknown args/)
    expect(() => loadHostLocalConf(base({ranges: [[{subnet: '10.0.0.0/24'}], [{subnet: '10.0.0.0/16'}]]}), [])).toThrow(/overlaps/)
    expect(() => loadHostLocalConf(base({}), [])).toThrow(/no IP ranges/)
    expect(() => loadHostLocalConf(base({ranges: [[{subnet: '10.0.0.0/24'}]], dataDir: '../../etc'}), [])).toThrow(/dataDir/)
    expect(() => loadHostLocalConf(base({ranges: [[{subnet: '10.0.0.0/24'}]], dataDir: '/var/lib/../../etc'}), [])).toThrow(/dataDir/)
  })
})

describe('host-local disk store (temp dir)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'h2x-hl-'))
  afterAll(() => rmSync(dir, {recursive: true, force: true}))
  const conf = (): PluginNetConf =>
    ({cniVersion: '1.0.0', name: 'dnet', type: 'bridge', ipam: {type: 'host-local', dataDir: dir, ranges: [[{subnet: '10.5.0.0/24'}], [{subnet: 'fd05::/64'}]]}}) as PluginNetConf

  it('writes the reference file layout and releases by id+ifname', async () => {
    const c = loadHostLocalConf(conf(), [])
    const r = await hostLocalAdd(c, 'cid1', 'eth0')
    expect(r.ips).toEqual([
      {address: '10.5.0.2/24', gateway: '10.5.0.1'},
      {address: 'fd05::2/64', gateway: 'fd05::1'},
    ])
    const d = join(dir, 'dnet')
    expect(readdirSync(d).sort()).toEqual(['10.5.0.2', 'fd05::2', 'last_reserved_ip.0', 'last_reserved_ip.1', 'lock'])
    expect(readFileSync(join(d, '10.5.0.2'), 'utf8')).toBe('cid1\r\neth0')
    expect(readFileSync(join(d, 'last_reserved_ip.1'), 'utf8')).toBe('fd05::2')
    expect(statSync(join(d, '10.5.0.2')).mode & 0o777).toBe(0o644)
    await hostLocalDel(c, 'cid1', 'eth0')
    await hostLocalDel(c, 'cid1', 'eth0') // idempotent
    expect(readdirSync(d).sort()).toEqual(['last_reserved_ip.0', 'last_reserved_ip.1', 'lock'])
  })
  it('falls back to releasing by container id for old files', async () => {
    const c = loadHostLocalConf(conf(), [])
    writeFileSync(join(dir, 'dnet', '10.5.0.50'), 'oldcid')
    await hostLocalDel(c, 'oldcid', 'eth0')
    expect(readdirSync(join(dir, 'dnet'))).not.toContain('10.5.0.50')
  })
  it('fails a whole ADD when one requested IP cannot be met, leaving no files', async () => {
    const c = loadHostLocalConf({...conf(), runtimeConfig: {ips: ['10.6.0.5']}} as PluginNetConf, [])
    await expect(hostLocalAdd(c, 'cid2', 'eth0')).rejects.toThrow(/failed to allocate all requested IPs: 10.6.0.5/)
    expect(readdirSync(join(dir, 'dnet')).filter((f) => !f.startsWith('last_') && f !== 'lock')).toEqual([])
  })
})

import {createHash} from 'node:crypto'
import {mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {
  nerdctlHostsStoreDir,
  parseHostsMeta,
  renderHostsBlock,
  spliceHostsBlock,
  syncNerdctlHosts,
  type NetworkMember,
} from '../../src/netconf/hostsstore.js'
import {FileLock} from '../../src/sys/flock.js'

/*
 * Fixtures in the format of containerd/nerdctl 8da504083f1543446a003f5870dec1bc12a75b85
 * (pkg/dnsutil/hostsstore, pkg/ocihook): nerdctl is not installed here.
 */

const A = 'a'.repeat(64)
const B = 'b'.repeat(64)
const C = 'c'.repeat(64)

let root: string
let store: string
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'hh-hosts-'))
  store = join(root, 'etchosts')
})
afterEach(() => {
  rmSync(root, {recursive: true, force: true})
})

/** A CNI 1.0 result of nerdctl's bridge chain, as go-cni hands it to the OCI hook. */
function cniResult(ip: string, gw: string, bridge: string): object {
  return {
    cniVersion: '1.0.0',
    interfaces: [
      {name: bridge, mac: '2a:4f:0e:11:22:33'},
      {name: 'veth6f1e2d3c', mac: '6e:aa:bb:cc:dd:ee'},
      {name: 'eth0', mac: '0a:58:0a:04:01:02', sandbox: '/proc/4242/ns/net'},
    ],
    ips: [{interface: 2, address: ip, gateway: gw}],
    routes: [{dst: '0.0.0.0/0'}],
    dns: {},
  }
}

/** meta.json as Go's json.Marshal writes hostsstore.Meta (field order, compact, null maps). */
function metaJson(id: string, name: string, networks: Record<string, string>, extraHosts: Record<string, string> | null = null): string {
  const nets: Record<string, object> = {}
  for (const [net, ip] of Object.entries(networks)) nets[net] = cniResult(ip, ip.replace(/\.\d+\/\d+$/, '.1'), `br-${net}`)
  return JSON.stringify({ID: id, Networks: nets, Hostname: id.slice(0, 12), ExtraHosts: extraHosts, Name: name, Domainname: ''})
}

function addContainer(ns: string, id: string, meta: string | undefined, hosts: string): string {
  const dir = join(store, ns, id)
  mkdirSync(dir, {recursive: true, mode: 0o700})
  if (meta !== undefined) writeFileSync(join(dir, 'meta.json'), meta, {mode: 0o600})
  writeFileSync(join(dir, 'hosts'), hosts, {mode: 0o644})
  return join(dir, 'hosts')
}

const HEAD = '# <nerdctl>\n127.0.0.1\tlocalhost localhost.localdomain\n::1\t\tlocalhost localhost.localdomain\n'
const TAIL = '# </nerdctl>\n'
const BEFORE = '# written by hand\n10.9.9.9\tby-hand.example   \n\n'
const AFTER = '  192.168.7.7 after.example # kept\n;odd line without newline'

/** The block nerdctl writes for web (A) and db (B) on mynet, in one of its (random) orders. */
const NERDCTL_BLOCK =
  HEAD +
  '10.4.1.3        bbbbbbbbbbbb bbbbbbbbbbbb.mynet db db.mynet\n' +
  '10.4.1.2        aaaaaaaaaaaa aaaaaaaaaaaa.mynet web web.mynet\n' +
  TAIL

function twoOnMynet(): {hostsA: string; hostsB: string} {
  const hostsA = addContainer('default', A, metaJson(A, 'web', {mynet: '10.4.1.2/24'}), BEFORE + NERDCTL_BLOCK + AFTER)
  const hostsB = addContainer('default', B, metaJson(B, 'db', {mynet: '10.4.1.3/24'}), NERDCTL_BLOCK)
  return {hostsA, hostsB}
}

const worker: NetworkMember = {namespace: 'default', id: C, names: ['worker', 'api'], ips: ['10.4.1.5/24']}
const WORKER_LINE = '10.4.1.5        worker worker.mynet api api.mynet\n'

/** The bytes before and after the marked region. */
function outside(text: string): [string, string] {
  const s = text.indexOf('# <nerdctl>')
  const e = text.indexOf(TAIL) + TAIL.length
  expect(s).toBeGreaterThanOrEqual(0)
  expect(e).toBeGreaterThan(s)
  return [text.slice(0, s), text.slice(e)]
}

function block(text: string): string {
  return text.slice(text.indexOf('# <nerdctl>'), text.indexOf(TAIL) + TAIL.length)
}

describe('nerdctlHostsStoreDir', () => {
  it('hashes the address as nerdctl does: unix:// trimmed, symlinks resolved, sha256, 8 hex chars', () => {
    // nerdctl's own comment in pkg/clientutil/client.go: /run/containerd/containerd.sock -> 1935db59
    expect(createHash('sha256').update('/run/containerd/containerd.sock').digest('hex').slice(0, 8)).toBe('1935db59')
    const sock = join(root, 'containerd.sock')
    writeFileSync(sock, '')
    const link = join(root, 'link.sock')
    symlinkSync(sock, link)
    const want = join('/var/lib/nerdctl', createHash('sha256').update(realpathSync(sock)).digest('hex').slice(0, 8), 'etchosts')
    expect(nerdctlHostsStoreDir('/var/lib/nerdctl', sock)).toBe(want)
    expect(nerdctlHostsStoreDir('/var/lib/nerdctl', `unix://${sock}`)).toBe(want)
    expect(nerdctlHostsStoreDir('/var/lib/nerdctl', link)).toBe(want)
    expect(() => nerdctlHostsStoreDir('/var/lib/nerdctl', join(root, 'missing.sock'))).toThrow(/cannot resolve the containerd address/)
  })
})

describe('the block nerdctl writes', () => {
  it('localhost lines, extra hosts, then peers, "%-15s %s", no .bridge suffix on the default network', () => {
    const meta = parseHostsMeta(
      JSON.stringify({ID: A, Networks: {bridge: cniResult('10.4.0.2/24', '10.4.0.1', 'nerdctl0')}, Hostname: 'h1', ExtraHosts: {'gw.example': '10.4.0.1'}, Name: 'web', Domainname: 'corp'}),
    )
    expect([...meta.networks]).toEqual([['bridge', ['10.4.0.2']]])
    expect(renderHostsBlock(meta.extraHosts, [{ip: '10.4.0.2', v6: false, names: ['h1.corp', 'h1', 'web']}])).toBe(
      HEAD + '10.4.0.1        gw.example\n' + '10.4.0.2        h1.corp h1 web\n' + TAIL,
    )
  })

  it('meta.json that Go would refuse is an error; loopback and unspecified addresses are not listed', () => {
    expect(() => parseHostsMeta('{"Networks": 5}')).toThrow()
    expect(() => parseHostsMeta('{"Networks": {"n": {"ips": [{"address": "10.1.2.3"}]}}}')).toThrow(/invalid CIDR/)
    expect(() => parseHostsMeta('{nope')).toThrow(/not JSON/)
    const m = parseHostsMeta('{"Networks": {"n": {"ips": [{"address": "127.0.0.5/8"}, {"address": "::/0"}, {"address": "fd00::0002/64"}]}}}')
    expect(m.networks.get('n')).toEqual(['fd00::2'])
    expect(parseHostsMeta('{}').hostname).toBe('')
  })

  it('splices: bytes outside kept, missing region appended after a newline, extra regions dropped', () => {
    const blk = HEAD + TAIL
    expect(spliceHostsBlock(Buffer.from('a b'), blk)!.toString()).toBe('a b\n' + blk)
    expect(spliceHostsBlock(Buffer.from(''), blk)!.toString()).toBe(blk)
    expect(spliceHostsBlock(Buffer.from(`x\n  #  <nerdctl> \t\nold\n# </nerdctl>\ny\n#<nerdctl>\nstale\n#</nerdctl>\nz`), blk)!.toString()).toBe(`x\n${blk}y\nz`)
    // a begin marker without an end: nerdctl skips to the end of the file
    expect(spliceHostsBlock(Buffer.from('x\n# <nerdctl>\nold\n'), blk)!.toString()).toBe(`x\n${blk}`)
    // the same lines in another order, or without the final newline: unchanged
    expect(spliceHostsBlock(Buffer.from('x\n' + NERDCTL_BLOCK.slice(0, -1)), NERDCTL_BLOCK)).toBeUndefined()
    const reordered = HEAD + '10.4.1.2        aaaaaaaaaaaa aaaaaaaaaaaa.mynet web web.mynet\n10.4.1.3        bbbbbbbbbbbb bbbbbbbbbbbb.mynet db db.mynet\n' + TAIL
    expect(spliceHostsBlock(Buffer.from(NERDCTL_BLOCK), reordered)).toBeUndefined()
  })
})

describe('syncNerdctlHosts', () => {
  it('a ctrnet-attached member on mynet appears in both hosts files, and goes away again; bytes outside the markers are untouched', async () => {
    const {hostsA, hostsB} = twoOnMynet()
    const inoA = statSync(hostsA).ino
    const beforeA = outside(readFileSync(hostsA, 'latin1'))

    const r1 = await syncNerdctlHosts(store, new Map([['mynet', [worker]]]))
    expect(r1.failed).toEqual([])
    expect(r1.updated.sort()).toEqual([`default/${A}`, `default/${B}`])
    const wantBlock =
      HEAD +
      '10.4.1.2        aaaaaaaaaaaa aaaaaaaaaaaa.mynet web web.mynet\n' +
      '10.4.1.3        bbbbbbbbbbbb bbbbbbbbbbbb.mynet db db.mynet\n' +
      WORKER_LINE +
      TAIL
    const a1 = readFileSync(hostsA, 'latin1')
    expect(block(a1)).toBe(wantBlock)
    expect(outside(a1)).toEqual(beforeA)
    expect(a1).toBe(BEFORE + wantBlock + AFTER)
    expect(readFileSync(hostsB, 'latin1')).toBe(wantBlock)
    // rewritten in place: the bind mount of /etc/hosts still sees it
    expect(statSync(hostsA).ino).toBe(inoA)
    expect(statSync(hostsA).mode & 0o777).toBe(0o644)

    const r2 = await syncNerdctlHosts(store, new Map())
    expect(r2.failed).toEqual([])
    expect(r2.updated.sort()).toEqual([`default/${A}`, `default/${B}`])
    const a2 = readFileSync(hostsA, 'latin1')
    expect(a2).not.toContain('worker')
    expect(outside(a2)).toEqual(beforeA)
    expect(readFileSync(hostsB, 'latin1')).not.toContain('worker')
    expect(block(readFileSync(hostsB, 'latin1')).split('\n').sort()).toEqual(NERDCTL_BLOCK.split('\n').sort())
  })

  it('a nerdctl container that ctrnet connected to a further network gets that network\'s peers; the others do not', async () => {
    const {hostsA, hostsB} = twoOnMynet()
    // ctrnet connected web (A) to "backend", where a ctr container "cache" lives
    const members = new Map<string, NetworkMember[]>([
      ['mynet', [worker, {namespace: 'default', id: A, names: ['web'], ips: ['10.4.1.2/24']}]],
      [
        'backend',
        [
          {namespace: 'default', id: A, names: ['web', 'frontend'], ips: ['10.4.2.2/24']},
          {namespace: 'default', id: 'd'.repeat(64), names: ['cache'], ips: ['10.4.2.3/24', 'fd00:4:2::3/64']},
        ],
      ],
      ['elsewhere', [{namespace: 'default', id: 'e'.repeat(64), names: ['stranger'], ips: ['10.4.9.9/24']}]],
    ])
    const r = await syncNerdctlHosts(store, members)
    expect(r.failed).toEqual([])
    const a = block(readFileSync(hostsA, 'latin1'))
    expect(a).toBe(
      HEAD +
        // nerdctl's own line for A's mynet address wins over the member entry for it
        '10.4.1.2        aaaaaaaaaaaa aaaaaaaaaaaa.mynet web web.mynet\n' +
        '10.4.1.3        bbbbbbbbbbbb bbbbbbbbbbbb.mynet db db.mynet\n' +
        WORKER_LINE +
        '10.4.2.2        web web.backend frontend frontend.backend\n' +
        '10.4.2.3        cache cache.backend\n' +
        'fd00:4:2::3     cache cache.backend\n' +
        TAIL,
    )
    const b = readFileSync(hostsB, 'latin1')
    expect(b).toContain(WORKER_LINE)
    expect(b).not.toContain('backend')
    expect(b).not.toContain('stranger')
    expect(a).not.toContain('stranger')
  })

  it('lists only peers of the same networks and namespace; a stopped container (no meta.json) is left alone', async () => {
    const {hostsA} = twoOnMynet()
    const hostsF = addContainer('default', 'f'.repeat(64), metaJson('f'.repeat(64), 'other', {othernet: '10.4.3.2/24'}), '')
    const stopped = addContainer('default', 'g'.repeat(64), undefined, 'old\n' + NERDCTL_BLOCK)
    const hostsK = addContainer('k8s.io', 'k'.repeat(64), metaJson('k'.repeat(64), 'kube', {mynet: '10.4.1.9/24'}), '')
    const r = await syncNerdctlHosts(store, new Map([['mynet', [worker, {namespace: 'k8s.io', id: 'x'.repeat(64), names: ['kx'], ips: ['10.4.1.10']}]]]))
    expect(r.failed).toEqual([])
    expect(r.updated.sort()).toEqual([`default/${A}`, `default/${B}`, `default/${'f'.repeat(64)}`, `k8s.io/${'k'.repeat(64)}`])
    const a = readFileSync(hostsA, 'latin1')
    expect(a).not.toContain('other')
    expect(a).not.toContain('kube')
    expect(a).not.toContain('kx')
    expect(readFileSync(hostsF, 'latin1')).toBe(HEAD + '10.4.3.2        ffffffffffff ffffffffffff.othernet other other.othernet\n' + TAIL)
    expect(readFileSync(hostsK, 'latin1')).toBe(HEAD + '10.4.1.9        kkkkkkkkkkkk kkkkkkkkkkkk.mynet kube kube.mynet\n10.4.1.10       kx kx.mynet\n' + TAIL)
    expect(readFileSync(stopped, 'latin1')).toBe('old\n' + NERDCTL_BLOCK)
  })

  it('a malformed meta.json is reported and skipped; the other containers are still updated', async () => {
    const {hostsA, hostsB} = twoOnMynet()
    const broken = addContainer('default', C, '{"ID": "' + C + '", "Networks": {"mynet": {"ips": [{"address": "10.4.1.77"}]}}', 'untouched\n')
    const r = await syncNerdctlHosts(store, new Map([['mynet', [worker]]]))
    expect(r.failed).toHaveLength(1)
    expect(r.failed[0].container).toBe(`default/${C}`)
    expect(r.failed[0].reason).toMatch(/^meta\.json: /)
    expect(r.updated.sort()).toEqual([`default/${A}`, `default/${B}`])
    expect(readFileSync(hostsA, 'latin1')).toContain(WORKER_LINE)
    expect(readFileSync(hostsB, 'latin1')).toContain(WORKER_LINE)
    expect(readFileSync(broken, 'latin1')).toBe('untouched\n')
  })

  it('is idempotent: a second sync writes nothing (mtime and inode kept)', async () => {
    const {hostsA, hostsB} = twoOnMynet()
    const members = new Map([['mynet', [worker]]])
    await syncNerdctlHosts(store, members)
    const old = new Date('2001-02-03T04:05:06Z')
    for (const p of [hostsA, hostsB]) utimesSync(p, old, old)
    const before = [hostsA, hostsB].map((p) => statSync(p, {bigint: true}))
    const r = await syncNerdctlHosts(store, members)
    expect(r).toEqual({updated: [], unchanged: 2, failed: []})
    const after = [hostsA, hostsB].map((p) => statSync(p, {bigint: true}))
    for (const i of [0, 1]) {
      expect(after[i].ino).toBe(before[i].ino)
      expect(after[i].mtimeNs).toBe(before[i].mtimeNs)
      expect(after[i].mtimeMs).toBe(BigInt(old.getTime()))
    }
  })

  it('waits for nerdctl\'s lock: flock on the namespace directory', async () => {
    const {hostsB} = twoOnMynet()
    const held = await FileLock.acquireDir(join(store, 'default'))
    let done = false
    const p = syncNerdctlHosts(store, new Map([['mynet', [worker]]])).then((r) => ((done = true), r))
    await new Promise((res) => setTimeout(res, 400))
    expect(done).toBe(false)
    expect(readFileSync(hostsB, 'latin1')).toBe(NERDCTL_BLOCK)
    held.release()
    const r = await p
    expect(r.updated).toHaveLength(2)
    expect(readFileSync(hostsB, 'latin1')).toContain(WORKER_LINE)
  })

  it('never follows a symlinked hosts file, rejects names that would break a hosts line, and an absent store is empty', async () => {
    twoOnMynet()
    const target = join(root, 'victim')
    writeFileSync(target, 'secret\n')
    rmSync(join(store, 'default', B, 'hosts'))
    symlinkSync(target, join(store, 'default', B, 'hosts'))
    const evil: NetworkMember = {namespace: 'default', id: C, names: ['ok', 'bad\n1.2.3.4 evil', '#x'], ips: ['10.4.1.5', 'nope']}
    const r = await syncNerdctlHosts(store, new Map([['mynet', [evil]]]))
    expect(readFileSync(target, 'latin1')).toBe('secret\n')
    expect(r.updated).toEqual([`default/${A}`])
    expect(r.failed.map((f) => f.container).sort()).toEqual([`default/${B}`, `default/${C}`, `default/${C}`, `default/${C}`])
    const a = readFileSync(join(store, 'default', A, 'hosts'), 'latin1')
    expect(a).toContain('10.4.1.5        ok ok.mynet\n')
    expect(a).not.toContain('evil')
    expect(await syncNerdctlHosts(join(root, 'nowhere'), new Map())).toEqual({updated: [], unchanged: 0, failed: []})
  })
})

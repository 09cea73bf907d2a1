/**
 * The runtime's chain logic and the CNI exec protocol, against small
 * external plugins written here (node scripts), so no root is needed: order,
 * prevResult and runtimeConfig injection, the result cache, DEL in reverse,
 * undo of a failed ADD, and hostile plugins (garbage, silent failure, hang).
 */
import {mkdirSync, chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {CniRuntime} from '../../src/libcni/runtime.js'
import {type CacheRecord, entryPaths, listAttachments} from '../../src/libcni/cache.js'

// The cache as the tests look at it: the stored record of one key, and the
// finished (cached) and in-flight (journalled) attachments.
const readCachedAttachment = (cacheDir: string, networkName: string, containerId: string, ifName: string): CacheRecord | undefined => {
  try {
    return JSON.parse(readFileSync(entryPaths(cacheDir, {networkName, containerId, ifName})[0], 'utf8')) as CacheRecord
  } catch {
    return undefined
  }
}
const listCachedAttachments = (cacheDir: string, network?: string) => listAttachments(cacheDir, {network}).filter((a) => !a.pending)
const listPending = (cacheDir: string, network?: string) => listAttachments(cacheDir, {network}).filter((a) => a.pending)

const PLUGIN = `#!/usr/bin/env node
const fs = require('fs')
const conf = JSON.parse(fs.readFileSync(0, 'utf8'))
const e = process.env
fs.appendFileSync(process.env.FAKE_LOG, JSON.stringify({cmd: e.CNI_COMMAND, type: conf.type, tag: conf.tag, args: e.CNI_ARGS, netns: e.CNI_NETNS, ifname: e.CNI_IFNAME, prev: conf.prevResult, rc: conf.runtimeConfig, version: conf.cniVersion, name: conf.name}) + '\\n')
const b = (conf.behavior || {})[e.CNI_COMMAND] || 'ok'
if (b === 'garbage') { process.stdout.write('<<not json>>'); process.exit(0) }
if (b === 'silent-fail') { process.stderr.write('boom on stderr'); process.exit(3) }
if (b === 'hang') { setTimeout(() => {}, 1e9); return }
if (b === 'cni-error') { process.stdout.write(JSON.stringify({cniVersion: conf.cniVersion, code: 11, msg: 'try again', details: 'busy'})); process.exit(1) }
if (e.CNI_COMMAND !== 'ADD') process.exit(0)
const prev = conf.prevResult || {cniVersion: conf.cniVersion, interfaces: [], ips: [], routes: [], dns: {}}
const res = {...prev, cniVersion: conf.cniVersion}
if (conf.addIp) res.ips = [...(res.ips || []), {address: conf.addIp, interface: 0, ...(conf.cniVersion < '1' ? {version: '4'} : {})}]
process.stdout.write(JSON.stringify(res))
`

let dir: string
let log: string
const runtime = (timeout?: number) =>
  new CniRuntime({cniPath: [join(dir, 'bin')], cacheDir: join(dir, 'cache'), mode: 'exec', execTimeoutMs: timeout})
const entries = () =>
  readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
const net = (plugins: object[], cniVersion = '1.0.0') => {
  const conf = {cniVersion, name: 'fake', plugins}
  return {conf: conf as never, bytes: Buffer.from(JSON.stringify(conf))}
}
const rt = {containerId: 'c1', netns: '/var/run/netns/nowhere', ifName: 'eth0', args: [['IgnoreUnknown', '1']] as Array<[string, string]>}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ctrnet-rt-'))
  log = join(dir, 'log')
  process.env.FAKE_LOG = log
  for (const name of ['fa', 'fb', 'fc']) {
    const bin = join(dir, 'bin')
    mkdirSync(bin, {recursive: true})
    writeFileSync(join(bin, name), PLUGIN)
    chmodSync(join(bin, name), 0o755)
  }
})
afterAll(() => rmSync(dir, {recursive: true, force: true}))

describe('chain execution by the CNI protocol', () => {
  it('runs ADD in order with prevResult, capability args only where declared, and caches the result', async () => {
    writeFileSync(log, '')
    const n = net([
      {type: 'fa', tag: 'first', addIp: '10.0.0.2/24'},
      {type: 'fb', tag: 'second', capabilities: {portMappings: true}},
      {type: 'fc', tag: 'third', capabilities: {ips: false}},
    ])
    const caps = {portMappings: [{hostPort: 8080, containerPort: 80, protocol: 'tcp'}], ips: ['10.0.0.9']}
    const res = await runtime().addNetworkList(n, {...rt, capabilityArgs: caps})
    expect(res.ips).toEqual([{address: '10.0.0.2/24', interface: 0}])
    const e = entries()
    expect(e.map((x) => `${x.cmd}:${x.tag}`)).toEqual(['ADD:first', 'ADD:second', 'ADD:third'])
    expect(e[0].prev).toBeUndefined()
    expect(e[1].prev.ips[0].address).toBe('10.0.0.2/24')
    expect(e[0].rc).toBeUndefined()
    expect(e[1].rc).toEqual({portMappings: caps.portMappings})
    expect(e[2].rc).toBeUndefined()
    expect(e.every((x) => x.name === 'fake' && x.version === '1.0.0' && x.args === 'IgnoreUnknown=1' && x.ifname === 'eth0')).toBe(true)
    const cached = readCachedAttachment(join(dir, 'cache'), 'fake', 'c1', 'eth0')!
    expect(Object.keys(cached)).toEqual(['kind', 'containerId', 'config', 'ifName', 'networkName', 'netns', 'cniArgs', 'capabilityArgs', 'result'])
    expect(Buffer.from(cached.config, 'base64').toString()).toBe(n.bytes.toString())
    expect(listPending(join(dir, 'cache'))).toEqual([])
  })

  it('runs DEL in reverse with the cached config, result and capability args, then drops the cache entry', async () => {
    writeFileSync(log, '')
    // The conflist changed since the ADD: DEL still runs what the ADD ran.
    const n = net([{type: 'fa', tag: 'first', addIp: '10.0.0.2/24'}])
    await runtime().delNetworkList(n, {containerId: 'c1', netns: '', ifName: 'eth0'})
    const e = entries()
    expect(e.map((x) => `${x.cmd}:${x.tag}`)).toEqual(['DEL:third', 'DEL:second', 'DEL:first'])
    expect(e[1].prev.ips[0].address).toBe('10.0.0.2/24')
    expect(e[1].rc.portMappings[0].hostPort).toBe(8080)
    expect(e[0].rc).toBeUndefined()
    expect(e[1].netns).toBe('') // '' says "no netns"; it is not replaced by the cached path
    expect(listCachedAttachments(join(dir, 'cache'), 'fake')).toEqual([])
  })

  it('gives 0.4.0 plugins prevResult in 0.4.0 form', async () => {
    writeFileSync(log, '')
    const n = net([{type: 'fa', addIp: '10.0.0.3/24'}, {type: 'fb'}], '0.4.0')
    const res = await runtime().addNetworkList(n, {...rt, containerId: 'c2'})
    expect(res.cniVersion).toBe('0.4.0')
    expect(entries()[1].prev.ips[0].version).toBe('4')
    await runtime().delNetworkList(n, {...rt, containerId: 'c2'})
  })

  it('undoes a failed ADD: DEL for every plugin started, in reverse, no cache entry left', async () => {
    writeFileSync(log, '')
    const n = net([{type: 'fa', addIp: '10.0.0.4/24', tag: 'a'}, {type: 'fb', tag: 'b', behavior: {ADD: 'cni-error'}}, {type: 'fc', tag: 'c'}])
    await expect(runtime().addNetworkList(n, {...rt, containerId: 'c3'})).rejects.toThrow(/plugin type="fb" failed \(add\): try again/)
    expect(entries().map((x) => `${x.cmd}:${x.tag}`)).toEqual(['ADD:a', 'ADD:b', 'DEL:b', 'DEL:a'])
    expect(readCachedAttachment(join(dir, 'cache'), 'fake', 'c3', 'eth0')).toBeUndefined()
    expect(listPending(join(dir, 'cache'))).toEqual([])
  })

  it('reports garbage on stdout as a decoding error', async () => {
    const n = net([{type: 'fa', behavior: {ADD: 'garbage'}}])
    await expect(runtime().addNetworkList(n, {...rt, containerId: 'c4'})).rejects.toThrow(/failed to decode plugin result/)
  })

  it('reports a non-zero exit without JSON with the plugin\'s stderr', async () => {
    const n = net([{type: 'fa', behavior: {ADD: 'silent-fail'}}])
    await expect(runtime().addNetworkList(n, {...rt, containerId: 'c5'})).rejects.toThrow(/boom on stderr/)
  })

  it('kills a plugin that hangs', async () => {
    const n = net([{type: 'fa', behavior: {ADD: 'hang'}}])
    await expect(runtime(1500).addNetworkList(n, {...rt, containerId: 'c6'})).rejects.toThrow(/timed out/)
  })

  it('refuses unknown versions, bad names and plugin types with a path', async () => {
    await expect(runtime().addNetworkList(net([{type: 'fa'}], '9.9.9'), rt)).rejects.toThrow(/incompatible CNI versions/)
    await expect(runtime().addNetworkList(net([{type: '../fa'}]), rt)).rejects.toThrow(/invalid plugin type/)
    await expect(runtime().addNetworkList(net([{type: 'nope'}]), rt)).rejects.toThrow(/failed to find plugin "nope"/)
    await expect(runtime().addNetworkList(net([{type: 'fa'}]), {...rt, containerId: 'a/b'})).rejects.toThrow(/containerID/)
  })

  it('GC deletes cached attachments that are not valid and keeps the valid ones', async () => {
    writeFileSync(log, '')
    const n = net([{type: 'fa', addIp: '10.0.0.5/24'}])
    await runtime().addNetworkList(n, {...rt, containerId: 'keep'})
    await runtime().addNetworkList(n, {...rt, containerId: 'drop'})
    const report = await runtime().gcNetworkList(n, [{containerId: 'keep', ifName: 'eth0'}])
    expect(report.removed.map((r) => r.containerId)).toEqual(['drop'])
    expect(listCachedAttachments(join(dir, 'cache'), 'fake').map((a) => a.containerId)).toEqual(['keep'])
    // default valid set: attachments whose netns exists (this one's does not)
    const r2 = await runtime().gcNetworkList(n, undefined, {dryRun: true})
    expect(r2.removed.map((r) => r.containerId)).toEqual(['keep'])
    expect(readdirSync(join(dir, 'cache', 'results'))).toEqual(['fake-keep-eth0'])
  })
})

describe('VERSION', () => {
  it('asks an external plugin by the CNI protocol and reports embedded ones itself', async () => {
    const dir2 = mkdtempSync(join(tmpdir(), 'ctrnet-ver-'))
    const bin = join(dir2, 'bin')
    mkdirSync(bin)
    writeFileSync(join(bin, 'verplug'), '#!/bin/sh\n[ "$CNI_COMMAND" = VERSION ] || exit 9\necho \'{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}\'\n')
    chmodSync(join(bin, 'verplug'), 0o755)
    try {
      const rt = new CniRuntime({cniPath: [bin], cacheDir: join(dir2, 'cache'), mode: 'embedded'})
      expect(await rt.versionInfo('verplug')).toEqual({cniVersion: '1.0.0', supportedVersions: ['0.4.0', '1.0.0']})
      expect((await rt.versionInfo('bridge')).supportedVersions).toEqual(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'])
    } finally {
      rmSync(dir2, {recursive: true, force: true})
    }
  })
})

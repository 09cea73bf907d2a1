/**
 * Issue 5: `network gc` with a real containerd: attachments of containers
 * whose task was killed are released (lease, rules, cache, label); those of
 * running containers are untouched.
 */
import {spawnSync} from 'node:child_process'
import {existsSync, readdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {HostNs, PrivateContainerd, type RunResult} from './containerd-harness.js'

const NS = 'rlgc'
let ctrd: PrivateContainerd
let host: HostNs

function cli(args: string[]): RunResult {
  return host.cli(args, {address: ctrd.address, namespace: NS})
}
function ok(args: string[]): string {
  const r = cli(args)
  if (r.code !== 0) throw new Error(`ctrnet ${args.join(' ')} -> exit ${r.code}: ${r.stderr}`)
  return r.stdout
}
const cache = () => (existsSync(join(host.cache, 'results')) ? readdirSync(join(host.cache, 'results')).sort() : [])
const rules = () => host.exec('iptables-save', []).stdout.split('\n').filter((l) => l.startsWith('-A'))

beforeAll(async () => {
  ctrd = new PrivateContainerd('rlgc')
  await ctrd.start()
  host = new HostNs('rlgc')
  host.createNetwork('gcnet', ['--subnet', '10.45.1.0/24'], NS)
  ctrd.runContainer(NS, 'gc-alive', {labels: {'nerdctl/name': 'alive'}})
  ctrd.runContainer(NS, 'gc-doomed', {labels: {'nerdctl/name': 'doomed'}})
})

afterAll(async () => {
  await ctrd?.stop()
  host?.cleanup()
})

describe('network gc', () => {
  it('releases the attachments of a killed task and keeps the running one', async () => {
    ok(['network', 'connect', 'gcnet', 'alive', '-p', '18080:80'])
    ok(['network', 'connect', 'gcnet', 'doomed', '-p', '18081:80'])
    expect(host.leases('gcnet')).toHaveLength(2)
    const rulesBefore = rules()
    await ctrd.killTask(NS, 'gc-doomed')

    // a writer killed between create and rename left its temp file (its PID is dead); a live one's stays
    const deadPid = Number(spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], {encoding: 'utf8'}).stdout.trim())
    const orphan = `.gcnet-rlgc-gc-x-eth0.${deadPid}.0123456789ab.tmp`
    const inFlight = `.gcnet-rlgc-gc-y-eth0.${process.pid}.0123456789ab.tmp`
    for (const n of [orphan, inFlight]) writeFileSync(join(host.cache, 'results', n), '{')

    const dry = ok(['network', 'gc', '--dry-run'])
    expect(cache()).toContain(orphan)
    expect(dry).toMatch(/would release gcnet rlgc-gc-doomed eth0/)
    expect(dry).not.toMatch(/alive/)
    expect(host.leases('gcnet')).toHaveLength(2)

    const out = ok(['network', 'gc'])
    expect(out).toMatch(/released gcnet rlgc-gc-doomed eth0/)
    expect(out).toMatch(/label updated rlgc-gc-doomed/)
    expect(host.leases('gcnet')).toHaveLength(1)
    expect(cache()).toEqual([inFlight, 'gcnet-rlgc-gc-alive-eth0'])
    expect(ctrd.labels(NS, 'gc-doomed')['nerdctl/networks']).toBe('[]')
    expect(ctrd.labels(NS, 'gc-alive')['nerdctl/networks']).toBe('["gcnet"]')
    const left = rules()
    expect(left.some((l) => l.includes('rlgc-gc-doomed'))).toBe(false)
    expect(left.some((l) => l.includes('rlgc-gc-alive'))).toBe(true)
    expect(left.length).toBeLessThan(rulesBefore.length)

    // a second run finds nothing to do
    expect(ok(['network', 'gc'])).toBe('')
    ok(['network', 'disconnect', 'gcnet', 'alive'])
    expect(host.leases('gcnet')).toHaveLength(0)
  })
})

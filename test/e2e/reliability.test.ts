/**
 * Issue 5: nothing leaks or is lost under concurrency, crashes and dead
 * containers. Everything runs inside throwaway namespaces with private dirs.
 */
import {spawn} from 'node:child_process'
import {writeFileSync, mkdirSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {createNetns, destroyNetns, netnsPath, nsTry, useNetnsCleanup} from '../helpers/netns.js'
import {account, chains, CLI, isClean, makeLab, summary, type Lab} from './reliability-lib.js'

useNetnsCleanup(afterAll)

const N = 24

describe(`${N} parallel ADDs then ${N} parallel DELs on one network with portmap`, () => {
  let lab: Lab
  const containers: string[] = []
  beforeAll(async () => {
    lab = await makeLab('par', {subnet: '10.77.0.0/24'})
    for (let i = 0; i < N; i++) containers.push(await createNetns('rlc', `p${i}`))
  })
  afterAll(async () => {
    for (const c of containers) await destroyNetns(c)
    await lab?.cleanup()
  })

  it('gives every container a distinct address and accounts for every lease and rule', async () => {
    const adds = await Promise.all(
      containers.map((c, i) => lab.cli(['cni', 'add', lab.net, netnsPath(c), '--container-id', `par${i}`, '-p', `${20000 + i}:80/tcp`])),
    )
    for (const r of adds) expect(r.code, r.stderr).toBe(0)
    const ips = adds.map((r) => JSON.parse(r.stdout).ips[0].address as string)
    expect(new Set(ips).size).toBe(N)
    const a = await account(lab)
    expect(Object.keys(a.leases).sort()).toEqual(ips.map((ip) => ip.split('/')[0]).sort())
    for (let i = 0; i < N; i++) expect(a.leases[ips[i].split('/')[0]]).toBe(`par${i}\r\neth0`)
    expect(a.veths.length).toBe(N)
    expect(a.masqChains.sort()).toEqual(containers.map((_, i) => chains(lab.net, `par${i}`).masq).sort())
    expect(a.dnatChains.sort()).toEqual(containers.map((_, i) => chains(lab.net, `par${i}`).dnat).sort())
    expect(a.dnatJumps).toBe(N)
    expect(a.postroutingJumps).toBe(N)
    expect(a.firewallRules).toBe(2 * N)
    expect(a.cache.length).toBe(N)
    expect(a.pending).toEqual([])
    // no duplicate rule anywhere
    const rules = a.iptables.split('\n').filter((l) => l.startsWith('-A '))
    expect(rules.length).toBe(new Set(rules).size)

    const dels = await Promise.all(containers.map((c, i) => lab.cli(['cni', 'del', lab.net, netnsPath(c), '--container-id', `par${i}`])))
    for (const r of dels) expect(r.code, r.stderr).toBe(0)
    const after = await account(lab)
    expect(isClean(after), summary(after)).toBe(true)
  })
})

describe('SIGKILL at random points of an ADD, then DEL', () => {
  const TRIALS = 12
  let lab: Lab
  beforeAll(async () => {
    lab = await makeLab('kill', {subnet: '10.78.0.0/24'})
  })
  afterAll(async () => lab?.cleanup())

  it(`leaves nothing after ${TRIALS} trials`, async () => {
    const outcomes: string[] = []
    for (let t = 0; t < TRIALS; t++) {
      const c = await createNetns('rlk', `k${t}`)
      const cid = `kill${t}`
      // Spread the kill over the whole ADD (it takes a few hundred ms with start-up).
      const delay = Math.floor((t / TRIALS) * 400 + Math.random() * 40)
      const child = spawn('ip', ['netns', 'exec', lab.host, process.execPath, CLI, 'cni', 'add', lab.net, netnsPath(c), '--container-id', cid, '-p', `${21000 + t}:80`, '--cni-netconfpath', lab.conf, '--cni-cachedir', lab.cache], {stdio: 'ignore'})
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
      await new Promise((r) => setTimeout(r, delay))
      child.kill('SIGKILL')
      const code = await exited
      outcomes.push(code === 0 ? 'completed' : 'killed')
      // Helper processes the killed ADD had started (ip, iptables-restore) finish on
      // their own within milliseconds; a later DEL comes after them.
      await new Promise((r) => setTimeout(r, 300))
      const del = await lab.cli(['cni', 'del', lab.net, netnsPath(c), '--container-id', cid])
      expect(del.code, `trial ${t} (delay ${delay} ms): ${del.stderr}`).toBe(0)
      const a = await account(lab)
      expect(isClean(a), `trial ${t} (delay ${delay} ms, ${outcomes[t]}): ${summary(a)}`).toBe(true)
      await destroyNetns(c)
    }
    expect(outcomes.length).toBe(TRIALS)
  })
})

describe('gc after containers die', () => {
  let lab: Lab
  beforeAll(async () => {
    lab = await makeLab('gc', {subnet: '10.79.0.0/24'})
  })
  afterAll(async () => lab?.cleanup())

  it('reclaims dead attachments (and an interrupted ADD) and leaves live ones untouched', async () => {
    const live = await createNetns('rlg', 'live')
    const dead1 = await createNetns('rlg', 'dead1')
    const dead2 = await createNetns('rlg', 'dead2')
    for (const [ns, cid, port] of [
      [live, 'live', 22001],
      [dead1, 'dead1', 22002],
      [dead2, 'dead2', 22003],
    ] as const) {
      const r = await lab.cli(['cni', 'add', lab.net, netnsPath(ns), '--container-id', cid, '-p', `${port}:80`])
      expect(r.code, r.stderr).toBe(0)
    }
    // an ADD killed half-way (a journal entry or a cache entry, depending on the moment)
    const dead3 = await createNetns('rlg', 'dead3')
    const child = spawn('ip', ['netns', 'exec', lab.host, process.execPath, CLI, 'cni', 'add', lab.net, netnsPath(dead3), '--container-id', 'dead3', '-p', '22004:80', '--cni-netconfpath', lab.conf, '--cni-cachedir', lab.cache], {stdio: 'ignore'})
    const exited = new Promise((r) => child.on('exit', r))
    await new Promise((r) => setTimeout(r, 260))
    child.kill('SIGKILL')
    await exited
    await new Promise((r) => setTimeout(r, 300))
    await destroyNetns(dead1)
    await destroyNetns(dead2)
    await destroyNetns(dead3)
    // the kernel dismantles a deleted netns (and so the host ends of its veths) asynchronously
    for (let i = 0; i < 50 && (await account(lab)).veths.length > 1; i++) await new Promise((r) => setTimeout(r, 100))
    const before = await account(lab)
    expect(before.veths.length).toBe(1)
    expect(Object.keys(before.leases).length).toBeGreaterThanOrEqual(3)

    const dry = await lab.cli(['cni', 'gc', lab.net, '--dry-run'])
    expect(dry.code, dry.stderr).toBe(0)
    expect(dry.stdout).toMatch(/would remove dead1 eth0/)
    expect(dry.stdout).toMatch(/would remove dead2 eth0/)
    expect(dry.stdout).not.toMatch(/live/)
    expect(summary(await account(lab))).toBe(summary(before)) // dry run changed nothing

    const gc = await lab.cli(['cni', 'gc', lab.net])
    expect(gc.code, gc.stderr).toBe(0)
    const a = await account(lab)
    expect(Object.values(a.leases)).toEqual(['live\r\neth0'])
    expect(a.masqChains).toEqual([chains(lab.net, 'live').masq])
    expect(a.dnatChains).toEqual([chains(lab.net, 'live').dnat])
    expect(a.firewallRules).toBe(2)
    expect(a.cache).toEqual([`${lab.net}-live-eth0`])
    expect(a.veths.length).toBe(1)
    // the live container still answers
    const ip = Object.keys(a.leases)[0]
    const ping = await nsTry(lab.host, ['busybox', 'ping', '-c', '1', '-W', '2', ip])
    expect(ping.code, ping.stdout + ping.stderr).toBe(0)

    const del = await lab.cli(['cni', 'del', lab.net, netnsPath(live), '--container-id', 'live'])
    expect(del.code, del.stderr).toBe(0)
    expect(isClean(await account(lab))).toBe(true)
  })

  it('reclaims a host-local lease that has no cache entry and whose owner is gone', async () => {
    const leaseDir = join(lab.data, lab.net)
    mkdirSync(leaseDir, {recursive: true})
    writeFileSync(join(leaseDir, '10.79.0.200'), 'orphan\r\neth0')
    const gc = await lab.cli(['cni', 'gc', lab.net])
    expect(gc.code, gc.stderr).toBe(0)
    expect((await account(lab)).leases).toEqual({})
  })
})

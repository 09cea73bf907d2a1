/**
 * Issue 5: nothing leaks or is lost under concurrency, crashes and dead
 * containers. Everything runs inside throwaway namespaces with private dirs.
 */
import {spawn} from 'node:child_process'
import {closeSync, openSync, writeFileSync, mkdirSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {createNetns, destroyNetns, netnsPath, nsTry, useNetnsCleanup} from '../helpers/netns.js'
import {account, addPhase, chains, CLI, isClean, leaseDirFiles, makeLab, PHASES, spawnAdd, summary, type Lab, type Phase} from './reliability-lib.js'

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
  const TRIALS = 30
  const WARMUP = 3
  let lab: Lab
  beforeAll(async () => {
    lab = await makeLab('kill', {subnet: '10.78.0.0/24'})
  })
  afterAll(async () => lab?.cleanup())

  /** DEL, then exact accounting: nothing of any attachment, no torn lease or temp file. */
  async function delAndAccount(c: string, cid: string, what: string): Promise<void> {
    const del = await lab.cli(['cni', 'del', lab.net, netnsPath(c), '--container-id', cid])
    expect(del.code, `${what}: ${del.stderr}`).toBe(0)
    const a = await account(lab)
    expect(isClean(a), `${what}: ${summary(a)}`).toBe(true)
    expect(leaseDirFiles(lab), what).toEqual([])
  }

  it(`leaves nothing after ${TRIALS} kills spread over the measured ADD, landing in at least 3 phases`, async () => {
    // 1. How long an ADD takes here (process start-up included), un-killed.
    const durations: number[] = []
    for (let w = 0; w < WARMUP; w++) {
      const c = await createNetns('rlk', `w${w}`)
      const cid = `warm${w}`
      const add = spawnAdd(lab, netnsPath(c), cid, 21900 + w)
      const code = await add.exited
      durations.push(Date.now() - add.started)
      expect(code, `warm-up ADD ${w}`).toBe(0)
      expect((await addPhase(lab, cid)).phase).toBe('completed')
      await delAndAccount(c, cid, `warm-up ${w}`)
      await destroyNetns(c)
    }
    const duration = Math.max(...durations)
    const span = duration * 1.1

    // 2. Trial t is killed at a time uniform within slice t of [0, span].
    const trials: Array<{delay: number; phase: Phase; detail: string}> = []
    for (let t = 0; t < TRIALS; t++) {
      const c = await createNetns('rlk', `k${t}`)
      const cid = `kill${t}`
      const delay = Math.floor(((t + Math.random()) / TRIALS) * span)
      const add = spawnAdd(lab, netnsPath(c), cid, 21000 + t)
      await new Promise((r) => setTimeout(r, Math.max(0, add.started + delay - Date.now())))
      add.child.kill('SIGKILL')
      await add.exited
      const killedAt = Date.now()
      // where the ADD was when it died, before anything else touches the lab
      const {phase, detail} = await addPhase(lab, cid)
      trials.push({delay, phase, detail})
      // Helper processes the killed ADD had started (ip, iptables-restore) finish on
      // their own within milliseconds; a later DEL comes after them (docs/reliability.md).
      await new Promise((r) => setTimeout(r, Math.max(0, killedAt + 300 - Date.now())))
      await delAndAccount(c, cid, `trial ${t} (delay ${delay} ms, ${phase}: ${detail})`)
      await destroyNetns(c)
    }

    const histogram = Object.fromEntries(PHASES.map((p) => [p, trials.filter((x) => x.phase === p).length]))
    console.log(`SIGKILL: ADD ${durations.join('/')} ms, kills over 0..${Math.round(span)} ms, ${TRIALS} trials, phases ${JSON.stringify(histogram)}`)
    for (const [t, x] of trials.entries()) console.log(`  trial ${t}: ${x.delay} ms -> ${x.phase} (${x.detail})`)
    expect(trials.length).toBe(TRIALS)
    expect(Object.values(histogram).filter((k) => k > 0).length, JSON.stringify(histogram)).toBeGreaterThanOrEqual(3)
  }, 600_000) // 33 ADDs and 30 DELs of separate processes: ~90 s alone, several times that on a loaded 2-core machine
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

  it('reclaims, with cni del and with cni gc, an empty lease file as the reference leaves it when killed mid-write', async () => {
    // host-local v1.1.1 Reserve: open(O_RDWR|O_EXCL|O_CREATE, 0644), then write the owner.
    // Killed in between, it leaves an empty <ip> file (under the lock, so whoever
    // holds the lock next knows it is garbage).
    const leaseDir = join(lab.data, lab.net)
    mkdirSync(leaseDir, {recursive: true})
    const torn = (ip: string) => closeSync(openSync(join(leaseDir, ip), 'wx', 0o644))
    torn('10.79.0.201')
    expect(leaseDirFiles(lab)).toEqual([{name: '10.79.0.201', size: 0}])
    const c = await createNetns('rlg', 'torn')
    const del = await lab.cli(['cni', 'del', lab.net, netnsPath(c), '--container-id', 'someone'])
    expect(del.code, del.stderr).toBe(0)
    expect(leaseDirFiles(lab)).toEqual([])
    await destroyNetns(c)

    torn('10.79.0.202')
    writeFileSync(join(leaseDir, '.10.79.0.203.0123456789ab.tmp'), 'killed\r\neth0') // a killed ctrnet writer's temp file
    expect(leaseDirFiles(lab).length).toBe(2)
    const gc = await lab.cli(['cni', 'gc', lab.net])
    expect(gc.code, gc.stderr).toBe(0)
    expect(leaseDirFiles(lab)).toEqual([])
    expect(isClean(await account(lab))).toBe(true)
  })
})

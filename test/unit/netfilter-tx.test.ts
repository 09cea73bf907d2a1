/**
 * NetfilterTx, the explicit transaction the runtime hands to every plugin of
 * a chain: its bookkeeping (one lock, one save per family, one restore per
 * family at commit, plans replayed on a conflict, a failed plan dropped),
 * against stand-in iptables-save / iptables-restore scripts on PATH. No root.
 */
import {chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeEach, describe, expect, it} from 'vitest'
import {NetfilterTx, iptablesStats, saveForm} from '../../src/kernel/netfilter/iptables/index.js'

const dir = mkdtempSync(join(tmpdir(), 'ctrnet-nftx-'))
const lock = join(dir, 'iptables.lock')
const SAVE = ['*nat', ':PREROUTING ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]', 'COMMIT', '*filter', ':FORWARD ACCEPT [0:0]', 'COMMIT', ''].join('\n')

function script(name: string, body: string): void {
  writeFileSync(join(dir, name), `#!/bin/sh\nD='${dir}'\n${body}\n`)
  chmodSync(join(dir, name), 0o755)
}
for (const f of ['4', '6']) {
  const save = f === '4' ? 'iptables-save' : 'ip6tables-save'
  const restore = f === '4' ? 'iptables-restore' : 'ip6tables-restore'
  script(save, `echo save${f} >> "$D/calls"\n[ -e "$D/no${f}" ] && { echo "no such family" >&2; exit 1; }\ncat "$D/state${f}"`)
  // a restore fails (once per line in fail<f>) as if someone changed the tables meanwhile
  script(
    restore,
    `echo restore${f} >> "$D/calls"\ncat >> "$D/input${f}"\nif [ -s "$D/fail${f}" ]; then sed -i 1d "$D/fail${f}"; echo "Chain already exists" >&2; exit 1; fi`,
  )
}
process.env.PATH = `${dir}:${process.env.PATH ?? '/usr/bin:/bin'}`

function reset(): void {
  for (const f of ['calls', 'input4', 'input6', 'fail4', 'fail6', 'no4', 'no6']) rmSync(join(dir, f), {force: true})
  writeFileSync(join(dir, 'state4'), SAVE)
  writeFileSync(join(dir, 'state6'), SAVE)
}
const calls = () => (existsSync(join(dir, 'calls')) ? readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n') : [])
const input = (f: 4 | 6) => (existsSync(join(dir, `input${f}`)) ? readFileSync(join(dir, `input${f}`), 'utf8') : '')
const RETURN = saveForm(['-j', 'RETURN'])

beforeEach(reset)
afterAll(() => rmSync(dir, {recursive: true, force: true}))

describe('NetfilterTx', () => {
  it('costs nothing when nobody plans on it: no lock, no save, no restore', async () => {
    const s0 = iptablesStats.spawns
    const nf = new NetfilterTx(lock)
    await nf.commit()
    nf.release()
    nf.release()
    expect(iptablesStats.spawns).toBe(s0)
    expect(calls()).toEqual([])
    expect(existsSync(lock)).toBe(false)
  })

  it('records plans without applying them; commit applies all with one save and one restore per family', async () => {
    const nf = new NetfilterTx(lock)
    try {
      await nf.plan({families: [4], tables: ['nat']}, (txs) => {
        txs.get(4)!.ensureChain('nat', 'T-ONE').appendUnique('nat', 'T-ONE', RETURN)
      })
      // the second plan sees the first: the chain exists, the rule is there
      const seen = await nf.plan({families: [4, 6], tables: ['nat', 'filter']}, (txs) => {
        const had = txs.get(4)!.state.hasChain('nat', 'T-ONE')
        for (const tx of txs.values()) tx.ensureChain('nat', 'T-ONE').appendUnique('nat', 'T-ONE', RETURN).ensureChain('filter', 'T-TWO')
        return had
      })
      expect(seen).toBe(true)
      // the two families are read at once: either may be first
    expect(calls().sort()).toEqual(['save4', 'save6'])
      await nf.commit()
    } finally {
      nf.release()
    }
    expect(calls().sort()).toEqual(['restore4', 'restore6', 'save4', 'save6'])
    expect(input(4)).toBe('*nat\n-N T-ONE\n-A T-ONE -j RETURN\nCOMMIT\n*filter\n-N T-TWO\nCOMMIT\n')
    expect(input(6)).toBe('*nat\n-N T-ONE\n-A T-ONE -j RETURN\nCOMMIT\n*filter\n-N T-TWO\nCOMMIT\n')
  })

  it('applies nothing when released without a commit, and takes no plan afterwards', async () => {
    const nf = new NetfilterTx(lock)
    await nf.plan({families: [4], tables: ['nat']}, (txs) => void txs.get(4)!.ensureChain('nat', 'T-GONE'))
    nf.release()
    await expect(nf.plan({families: [4], tables: ['nat']}, () => undefined)).rejects.toThrow(/already committed or released/)
    await expect(nf.commit()).rejects.toThrow(/already committed or released/)
    expect(calls()).toEqual(['save4'])
  })

  it('drops what a failed plan recorded and keeps the plans that succeeded', async () => {
    const nf = new NetfilterTx(lock)
    try {
      await nf.plan({families: [4], tables: ['nat']}, (txs) => void txs.get(4)!.ensureChain('nat', 'T-KEEP'))
      await expect(
        nf.plan({families: [4], tables: ['nat']}, (txs) => {
          txs.get(4)!.ensureChain('nat', 'T-BAD')
          throw new Error('plan failed')
        }),
      ).rejects.toThrow('plan failed')
      await nf.plan({families: [4], tables: ['nat']}, (txs) => void txs.get(4)!.ensureChain('nat', 'T-AFTER'))
      await nf.commit()
    } finally {
      nf.release()
    }
    expect(input(4)).toBe('*nat\n-N T-KEEP\n-N T-AFTER\nCOMMIT\n')
  })

  it('serialises concurrent plans, in the order they were made', async () => {
    const nf = new NetfilterTx(lock)
    try {
      await Promise.all(['T-A', 'T-B', 'T-C'].map((c) => nf.plan({families: [4], tables: ['nat']}, (txs) => void txs.get(4)!.ensureChain('nat', c))))
      await nf.commit()
    } finally {
      nf.release()
    }
    expect(calls()).toEqual(['save4', 'restore4'])
    expect(input(4)).toBe('*nat\n-N T-A\n-N T-B\n-N T-C\nCOMMIT\n')
  })

  it('on a failed restore re-reads every family and replays every plan (at most twice)', async () => {
    writeFileSync(join(dir, 'fail4'), 'x\n')
    const r0 = iptablesStats.retries
    let runs = 0
    const nf = new NetfilterTx(lock)
    try {
      await nf.plan({families: [4, 6], tables: ['nat']}, (txs) => {
        runs++
        for (const tx of txs.values()) tx.ensureChain('nat', 'T-RACE')
      })
      // what the other writer did meanwhile: the chain now exists in the IPv4 tables
      writeFileSync(join(dir, 'state4'), SAVE.replace(':POSTROUTING ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]\n:T-RACE - [0:0]'))
      await nf.commit()
    } finally {
      nf.release()
    }
    expect(iptablesStats.retries - r0).toBe(1)
    expect(runs).toBe(2)
    expect(calls().filter((c) => c.startsWith('save')).sort()).toEqual(['save4', 'save4', 'save6', 'save6'])
    // the retry had nothing left to do for IPv4; IPv6 was applied each time
    expect(input(4)).toBe('*nat\n-N T-RACE\nCOMMIT\n')
    expect(input(6)).toBe('*nat\n-N T-RACE\nCOMMIT\n*nat\n-N T-RACE\nCOMMIT\n')

    reset()
    writeFileSync(join(dir, 'fail4'), 'x\nx\nx\n')
    const again = new NetfilterTx(lock)
    try {
      await again.plan({families: [4], tables: ['nat']}, (txs) => void txs.get(4)!.ensureChain('nat', 'T-LOST'))
      await expect(again.commit()).rejects.toThrow('iptables-restore: Chain already exists')
    } finally {
      again.release()
    }
    expect(calls().filter((c) => c === 'restore4')).toHaveLength(3)
  })

  it('leaves out an optional family whose save tool fails', async () => {
    writeFileSync(join(dir, 'no6'), '')
    const nf = new NetfilterTx(lock)
    try {
      const fams = await nf.plan({families: [4, 6], tables: ['nat'], optionalFamilies: [6]}, (txs) => [...txs.keys()])
      expect(fams).toEqual([4])
      await expect(nf.plan({families: [6], tables: ['nat']}, (txs) => [...txs.keys()])).resolves.toEqual([])
      await nf.commit()
    } finally {
      nf.release()
    }
    // the two families are read at once: either may be first
    expect(calls().sort()).toEqual(['save4', 'save6'])
  })

  it('fails a plan whose required family cannot be read', async () => {
    writeFileSync(join(dir, 'no4'), '')
    const nf = new NetfilterTx(lock)
    try {
      await expect(nf.plan({families: [4], tables: ['nat']}, () => undefined)).rejects.toThrow('iptables-save: no such family')
    } finally {
      nf.release()
    }
  })
})

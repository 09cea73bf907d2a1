/**
 * sys/atomic.ts: writeFileAtomic's temp files carry the writer's PID, and
 * sweepOrphanTemps removes those whose writer is gone (killed between create
 * and rename), never a live writer's, never anything else.
 */
import {spawnSync} from 'node:child_process'
import {mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {sweepOrphanTemps, writeFileAtomic} from '../../src/sys/atomic.js'

let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ctrnet-atomic-'))
})
afterEach(() => rmSync(dir, {recursive: true, force: true}))

/** The PID of a process that has exited (and was reaped). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], {encoding: 'utf8'})
  return Number(r.stdout.trim())
}

describe('temp files of killed writers', () => {
  it('writeFileAtomic leaves no temp file, and sweepOrphanTemps removes only dead writers\' ones', () => {
    writeFileAtomic(join(dir, 'net-c1-eth0'), 'x')
    expect(readdirSync(dir)).toEqual(['net-c1-eth0'])
    const dead = deadPid()
    const orphan = `.net-c2-eth0.${dead}.0123456789ab.tmp`
    const mine = `.net-c3-eth0.${process.pid}.0123456789ab.tmp`
    // the parent of this process: alive
    const live = `.net-c4-eth0.${process.ppid}.0123456789ab.tmp`
    const other = ['.net-c5-eth0.0123456789ab.tmp', 'net-c6-eth0', `.net-c7-eth0.${dead}.0123456789ab.tmp.x`]
    for (const n of [orphan, mine, live, ...other]) writeFileSync(join(dir, n), 'partial')
    expect(sweepOrphanTemps(dir)).toEqual([orphan])
    expect(readdirSync(dir).sort()).toEqual([mine, live, ...other, 'net-c1-eth0'].sort())
    expect(readFileSync(join(dir, 'net-c1-eth0'), 'utf8')).toBe('x')
    expect(sweepOrphanTemps(join(dir, 'missing'))).toEqual([])
  })
})

// `ctrnet network ls` over 50 networks against a bare `node -e 0`, measured
// alternately in the same run (median of 21 runs each). Goal: ratio <= 2.0.
import {spawnSync} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const cli = join(root, 'bin', 'run.js')
const RUNS = 21
const NETWORKS = 50

function timeRun(file, args) {
  const start = process.hrtime.bigint()
  const res = spawnSync(file, args, {stdio: ['ignore', 'ignore', 'pipe']})
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (res.status !== 0) throw new Error(`${file} ${args.join(' ')}: exit ${res.status}: ${res.stderr}`)
  return ms
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

export default async function bench() {
  const dir = mkdtempSync(join(tmpdir(), 'h1x-bench-ls-'))
  try {
    // Explicit subnets: no allocation scan, so setup stays quick.
    for (let i = 0; i < NETWORKS; i++) {
      const res = spawnSync(process.execPath, [cli, 'network', 'create', '--cni-netconfpath', dir, '--subnet', `10.77.${i}.0/24`, `bench${i}`], {
        encoding: 'utf8',
      })
      if (res.status !== 0) throw new Error(`network create bench${i}: ${res.stderr}`)
    }
    const lsArgs = [cli, 'network', 'ls', '--cni-netconfpath', dir]
    // warm the page cache once each
    timeRun(process.execPath, ['-e', '0'])
    timeRun(process.execPath, lsArgs)
    const base = []
    const ls = []
    for (let i = 0; i < RUNS; i++) {
      base.push(timeRun(process.execPath, ['-e', '0']))
      ls.push(timeRun(process.execPath, lsArgs))
    }
    const baselineMs = median(base)
    const ms = median(ls)
    return {name: `network ls (${NETWORKS} networks) vs node -e 0`, baselineMs, ms, ratio: ms / baselineMs, goal: 2.0}
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

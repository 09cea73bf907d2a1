#!/usr/bin/env node
// Runs every benchmark in bench/ (each file's default export returns rows
// {name, baselineMs, ms, ratio, goal?, goalMs?}) and prints them. Ratios compare
// against a baseline measured in the same run, on the same machine; goal is a
// bound on the ratio, goalMs a bound on ctrnet's own ms.
import {readdirSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import Table from 'cli-table3'

const here = dirname(fileURLToPath(import.meta.url))
const only = process.argv.slice(2)
const files = readdirSync(here)
  .filter((f) => f.endsWith('.js') && f !== 'run.js' && !f.startsWith('_'))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort()

const rows = []
let failed = false
for (const f of files) {
  process.stderr.write(`bench: ${f} ...\n`)
  try {
    const mod = await import(join(here, f))
    const out = await mod.default()
    rows.push(...(Array.isArray(out) ? out : [out]))
  } catch (err) {
    failed = true
    process.stderr.write(`bench: ${f} failed: ${err?.stack ?? err}\n`)
  }
}

const fmt = (n) => (typeof n === 'number' ? n.toFixed(1) : String(n ?? ''))
const table = new Table({head: ['benchmark', 'baseline ms', 'ctrnet ms', 'ratio', 'goal'], style: {head: [], border: []}})
for (const r of rows) {
  const goal =
    r.goal !== undefined
      ? `<= ${r.goal} ${r.ratio <= r.goal ? 'met' : 'MISSED'}`
      : r.goalMs !== undefined
        ? `ctrnet < ${r.goalMs} ms ${r.ms < r.goalMs ? 'met' : 'MISSED'}`
        : ''
  table.push([r.name, fmt(r.baselineMs), fmt(r.ms), r.ratio.toFixed(3), goal])
}
console.log(table.toString())
process.exitCode = failed ? 1 : 0

// The dependency lint of `npm run lint`: one dependency-cruiser run over
// src/ with .dependency-cruiser.cjs (layers, module cycles, ...), printed as
// depcruise prints it, then one check dependency-cruiser has no rule for:
// no cycle between FOLDERS. The module graph is collapsed to the folders
// that hold the modules (src/app/usage.ts is in src/app, src/app/dns/x.ts in
// src/app/dns: a folder is its own files, not its subfolders'), and any cycle
// among them fails, named folder by folder with an import that makes each
// step. (dependency-cruiser's own `scope: 'folder'` counts a folder with its
// subfolders, so it never sees a folder and its subfolder using each other.)
import {spawnSync} from 'node:child_process'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {format} from 'dependency-cruiser'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const bin = join(root, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs')
const run = spawnSync(process.execPath, [bin, 'src', '--config', '.dependency-cruiser.cjs', '--output-type', 'json'], {cwd: root, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024})
if (run.error || !run.stdout) {
  process.stderr.write(run.stderr || String(run.error) + '\n')
  process.exit(2)
}
const result = JSON.parse(run.stdout)
const report = await format(result, {outputType: 'err'})
process.stdout.write(report.output)

/** folder -> folder it imports -> the module imports that make the edge */
const edges = new Map()
for (const m of result.modules) {
  if (!m.source.startsWith('src/')) continue
  const from = dirname(m.source)
  for (const d of m.dependencies) {
    if (!d.resolved.startsWith('src/')) continue
    const to = dirname(d.resolved)
    if (to === from) continue
    if (!edges.has(from)) edges.set(from, new Map())
    const out = edges.get(from)
    if (!out.has(to)) out.set(to, [])
    out.get(to).push(`${m.source} -> ${d.resolved}`)
  }
}

/** Tarjan's strongly connected components of the folder graph. */
function components() {
  const index = new Map()
  const low = new Map()
  const stack = []
  const onStack = new Set()
  const out = []
  let next = 0
  const visit = (v) => {
    index.set(v, next)
    low.set(v, next++)
    stack.push(v)
    onStack.add(v)
    for (const w of edges.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v), low.get(w)))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)))
    }
    if (low.get(v) === index.get(v)) {
      const c = []
      let w
      do {
        w = stack.pop()
        onStack.delete(w)
        c.push(w)
      } while (w !== v)
      if (c.length > 1) out.push(c.sort())
    }
  }
  for (const v of [...edges.keys()].sort()) if (!index.has(v)) visit(v)
  return out
}

/** A shortest cycle through `start` inside one component. */
function cycleFrom(start, members) {
  const prev = new Map([[start, undefined]])
  const queue = [start]
  while (queue.length) {
    const v = queue.shift()
    for (const w of [...(edges.get(v)?.keys() ?? [])].sort()) {
      if (!members.has(w)) continue
      if (w === start) {
        const path = [v]
        for (let p = prev.get(v); p !== undefined; p = prev.get(p)) path.unshift(p)
        return [...path, start]
      }
      if (!prev.has(w)) {
        prev.set(w, v)
        queue.push(w)
      }
    }
  }
  return [start]
}

const cycles = components()
for (const c of cycles) {
  const path = cycleFrom(c[0], new Set(c))
  process.stdout.write(`\n  error no-circular-folders: ${path.join(' -> ')}${c.length > path.length - 1 ? ` (one cycle of the folders ${c.join(', ')})` : ''}\n`)
  for (let i = 0; i + 1 < path.length; i++) {
    const via = edges.get(path[i]).get(path[i + 1])
    process.stdout.write(`      ${via[0]}${via.length > 1 ? ` (and ${via.length - 1} more)` : ''}\n`)
  }
}
if (cycles.length) process.stdout.write(`\nx ${cycles.length} folder cycle(s): a folder's modules and another folder's import each other (see scripts/lint-deps.js)\n`)
process.exit(report.exitCode || run.status || cycles.length ? 1 : 0)

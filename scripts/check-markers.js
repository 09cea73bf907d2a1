#!/usr/bin/env node
// Fails when a tracked file still holds a merge's conflict markers: a line
// "<<<<<<< …", then "=======", then ">>>>>>> …", in that order. tsc and ESLint
// catch them in code; this catches them in Markdown, YAML, JSON and the rest.
import {execFileSync} from 'node:child_process'
import {readFileSync} from 'node:fs'

const files = execFileSync('git', ['ls-files', '-z'], {encoding: 'utf8'}).split('\0').filter(Boolean)
const found = []
for (const f of files) {
  let text
  try {
    text = readFileSync(f, 'utf8')
  } catch {
    continue // listed but not in the work tree (deleted, not yet committed)
  }
  if (!text.includes('<<<<<<< ')) continue
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].startsWith('<<<<<<< ')) continue
    const mid = lines.findIndex((l, j) => j > i && l === '=======')
    const end = lines.findIndex((l, j) => j > mid && l.startsWith('>>>>>>> '))
    if (mid > 0 && end > 0) found.push(`${f}:${i + 1}: conflict markers (to line ${end + 1})`)
  }
}
if (found.length > 0) {
  process.stderr.write(`check-markers: unresolved merge conflicts:\n${found.join('\n')}\n`)
  process.exit(1)
}

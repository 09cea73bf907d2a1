// Helpers the bench files share (run.js skips files starting with "_").
import {spawnSync} from 'node:child_process'

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** spawnSync with an argument array; throws on a non-zero exit. */
export function sh(file, args) {
  const r = spawnSync(file, args, {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')}: exit ${r.status}: ${r.stderr}`)
  return r.stdout
}

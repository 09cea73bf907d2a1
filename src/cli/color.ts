/**
 * Colour for what ctrnet writes to a terminal: only when the stream is a
 * TTY and NO_COLOR is unset (https://no-color.org); chalk decides the depth
 * (FORCE_COLOR, TERM).
 */
import {type ChalkInstance, chalkStderr} from 'chalk'

export function colorWanted(env: NodeJS.ProcessEnv, isTTY: boolean | undefined): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false
  return Boolean(isTTY) || (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0')
}

export function stderrChalk(): ChalkInstance | undefined {
  if (!colorWanted(process.env, process.stderr.isTTY)) return undefined
  return chalkStderr.level > 0 ? chalkStderr : undefined
}

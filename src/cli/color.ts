/**
 * Colour for what ctrnet writes to a terminal: only when the stream is a
 * TTY and NO_COLOR is unset (https://no-color.org); chalk decides the depth
 * (FORCE_COLOR, TERM). chalk loads only when colour is possible, so pipes and
 * scripts never pay for it.
 */
import type {ChalkInstance} from 'chalk'

export function colorWanted(env: NodeJS.ProcessEnv, isTTY: boolean | undefined): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false
  return Boolean(isTTY) || (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0')
}

export async function stderrChalk(): Promise<ChalkInstance | undefined> {
  if (!colorWanted(process.env, process.stderr.isTTY)) return undefined
  const {chalkStderr} = await import('chalk')
  return chalkStderr.level > 0 ? chalkStderr : undefined
}

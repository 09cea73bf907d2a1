/**
 * One error type for everything a user can cause or meet. The CLI prints it as
 * one line: `ctrnet: <what> : <why>`; no stack trace unless DEBUG is set.
 */
export class CtrnetError extends Error {
  constructor(
    public readonly what: string,
    public readonly why: string,
    public readonly exitCode = 1,
  ) {
    super(`${what} : ${why}`)
    this.name = 'CtrnetError'
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message
  return String(err)
}

/** Formats any error as the single stderr line ctrnet prints. */
export function formatError(err: unknown): string {
  const line = errorMessage(err)
    .replace(/\s*\n\s*/g, ' ')
    .trim()
    // no other character may break or rewrite the line on a terminal: CR, controls, NEL, U+2028/9
    // eslint-disable-next-line no-control-regex
    .replace(/[\x00-\x1f\x7f\u0085\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
  return `ctrnet: ${line}`
}

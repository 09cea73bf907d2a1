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
  return `ctrnet: ${errorMessage(err).replace(/\s*\n\s*/g, ' ').trim()}`
}

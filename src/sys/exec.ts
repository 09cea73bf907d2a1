import {spawn, type StdioOptions} from 'node:child_process'
import {accessSync, constants} from 'node:fs'
import {delimiter, join} from 'node:path'
import {CtrnetError} from './errors.js'

/**
 * The Debian package that provides each program ctrnet runs, so that a
 * missing one is named together with what to install.
 */
export const PROGRAM_PACKAGES: Readonly<Record<string, string>> = {
  ip: 'iproute2',
  bridge: 'iproute2',
  nft: 'nftables',
  'iptables-save': 'iptables',
  'iptables-restore': 'iptables',
  'ip6tables-save': 'iptables',
  'ip6tables-restore': 'iptables',
  nsenter: 'util-linux',
  flock: 'util-linux',
  sh: 'dash',
  cat: 'coreutils',
}

/** The error for a program that is not installed: names it and its Debian package. */
export function missingProgram(file: string, purpose?: string): CtrnetError {
  const pkg = PROGRAM_PACKAGES[file]
  const why = `not found in PATH${pkg ? ` (install the Debian package ${pkg})` : ''}${purpose ? `; needed ${purpose}` : ''}`
  return new CtrnetError(`program "${file}"`, why)
}

/** True when `file` is an executable on PATH (or an executable path). */
export function haveProgram(file: string, path = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'): boolean {
  const dirs = file.includes('/') ? [''] : path.split(delimiter).filter(Boolean)
  for (const d of dirs) {
    try {
      accessSync(d ? join(d, file) : file, constants.X_OK)
      return true
    } catch {
      /* next */
    }
  }
  return false
}

/** Fails with missingProgram() for the first of `files` that is not installed. */
export function requirePrograms(files: Iterable<string>, purpose?: string): void {
  for (const f of files) if (!haveProgram(f)) throw missingProgram(f, purpose)
}

export interface ExecOptions {
  input?: string | Buffer
  env?: NodeJS.ProcessEnv
  timeoutMs?: number
  /** Extra file descriptors handed to the child as fd 3, 4, ... */
  extraFds?: number[]
  /** Do not throw on a non-zero exit; the caller reads `code`. */
  allowFailure?: boolean
  /** Kill the child and fail when stdout grows past this many bytes (default 64 MiB). */
  maxStdout?: number
}

export interface ExecResult {
  code: number
  stdout: string
  stderr: string
}

/**
 * Runs a program with an argument array (never through a shell) and collects
 * its output. Throws an Error naming the program and its stderr on failure.
 */
export function run(file: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const stdio: StdioOptions = ['pipe', 'pipe', 'pipe', ...(opts.extraFds ?? [])]
    const child = spawn(file, args, {stdio, env: opts.env ?? process.env})
    const out: Buffer[] = []
    const err: Buffer[] = []
    let timedOut = false
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          timedOut = true
          child.kill('SIGKILL')
        }, opts.timeoutMs)
      : undefined
    let outBytes = 0
    let overflow = false
    const maxStdout = opts.maxStdout ?? 64 << 20
    child.stdout!.on('data', (d: Buffer) => {
      outBytes += d.length
      if (outBytes > maxStdout) {
        if (!overflow) child.kill('SIGKILL')
        overflow = true
        return
      }
      out.push(d)
    })
    child.stderr!.on('data', (d: Buffer) => err.push(d))
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer)
      reject(e.code === 'ENOENT' ? missingProgram(file) : new Error(`${file}: ${e.message}`))
    })
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer)
      const res = {code: code ?? 128, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString()}
      if (overflow) return reject(new Error(`${file} wrote more than ${maxStdout} bytes to stdout`))
      if (timedOut) return reject(new Error(`${file} timed out after ${opts.timeoutMs} ms`))
      if ((code !== 0 || signal) && !opts.allowFailure) {
        const why = res.stderr.trim() || res.stdout.trim() || `exit ${code ?? signal}`
        return reject(new Error(`${file} ${args.slice(0, 3).join(' ')}: ${why}`))
      }
      resolve(res)
    })
    child.stdin!.on('error', () => {})
    child.stdin!.end(opts.input ?? '')
  })
}

import {Command, Flags, Interfaces} from '@oclif/core'
import {stderrChalk} from './color.js'
import {CtrnetError, formatError} from '../sys/errors.js'
import {handEtcdHttp} from '../sys/etcd-port.js'

export type GlobalFlags = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags']>

/**
 * Every ctrnet command extends this: the global flags (same names and
 * environment variables as nerdctl) and the one-line error format.
 */
export abstract class BaseCommand extends Command {
  static override baseFlags = {
    'cni-netconfpath': Flags.string({
      description: 'CNI network config directory',
      env: 'NETCONFPATH',
      default: '/etc/cni/net.d',
      helpGroup: 'GLOBAL',
    }),
    'cni-path': Flags.string({
      description: 'CNI plugin binary directories, colon-separated',
      env: 'CNI_PATH',
      default: '/opt/cni/bin:/usr/lib/cni',
      helpGroup: 'GLOBAL',
    }),
    'cni-cachedir': Flags.string({
      description: 'CNI result cache directory',
      default: '/var/lib/cni',
      helpGroup: 'GLOBAL',
    }),
    namespace: Flags.string({
      char: 'n',
      description: 'containerd namespace',
      env: 'CONTAINERD_NAMESPACE',
      default: 'default',
      helpGroup: 'GLOBAL',
    }),
    address: Flags.string({
      char: 'a',
      description: 'containerd socket address',
      env: 'CONTAINERD_ADDRESS',
      default: '/run/containerd/containerd.sock',
      helpGroup: 'GLOBAL',
    }),
  }

  /**
   * The command boundary hands the etcd client its HTTP modules, loaded at its
   * first request: a command that never reaches etcd (an overlay network's)
   * never loads node:http/https (~5 ms).
   */
  override async init(): Promise<void> {
    await super.init()
    handEtcdHttp(() => import('../sys/etcd-http.js'))
  }

  /** Prints the error as one line on stderr and exits non-zero. */
  override async catch(err: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<never> {
    // oclif's own exit requests (this.exit) pass through untouched.
    if (err.oclif?.exit !== undefined && err.message.startsWith('EEXIT')) throw err
    const line = formatError(err)
    const c = stderrChalk()
    process.stderr.write((c ? c.red.bold('ctrnet:') + line.slice('ctrnet:'.length) : line) + '\n')
    if (process.env.DEBUG && err.stack) process.stderr.write(err.stack + '\n')
    const code = err instanceof CtrnetError ? err.exitCode : typeof err.oclif?.exit === 'number' ? err.oclif.exit : 1
    return this.exit(code || 1)
  }

  /** A warning as one line on stderr: `ctrnet: warning: <msg>`. */
  protected warnLine(msg: string): void {
    process.stderr.write(`ctrnet: warning: ${msg.replace(/\s*\n\s*/g, ' ')}\n`)
  }

  /** Writes a line to stdout (no chalk, no paging). */
  protected out(text: string): void {
    process.stdout.write(text.endsWith('\n') ? text : text + '\n')
  }
}

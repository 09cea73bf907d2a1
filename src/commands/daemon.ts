import {Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base-command.js'
import {modeFlag} from '../cli/cni-flags.js'
import {parseDuration} from '../cli/duration.js'
import {runtimeSettings} from '../cli/settings.js'
import {CtrnetError} from '../sys/errors.js'
import {handEtcdHttp} from '../sys/etcd-port.js'

export default class Daemon extends BaseCommand {
  static override description =
    'Make networks follow containers: attach the networks a container asks for in its ctrnet/networks label while its task runs, release them when it stops (every containerd namespace)'
  static override examples = ['<%= config.bin %> daemon', '<%= config.bin %> daemon --once --grace 0s', '<%= config.bin %> daemon --reconcile-interval 30s --run-dir /run/ctrnet']
  static override flags = {
    'reconcile-interval': Flags.string({description: 'time between two reconcile passes', default: '60s'}),
    grace: Flags.string({description: 'how long a task may stay stopped before its attachments are released', default: '5s'}),
    once: Flags.boolean({description: 'reconcile once and exit (1 when an attach or release failed or a label was refused)'}),
    'run-dir': Flags.string({description: 'directory of the daemon lock (one daemon per run dir)', default: '/run/ctrnet'}),
    'log-format': Flags.string({
      description: 'log format: json (one object per line, for journald) or text (one readable line per action); default: text on a terminal, else json',
      options: ['json', 'text'],
    }),
    dns: Flags.boolean({description: "answer the names of each bridge network's containers on its gateways (UDP and TCP), forward other names to the host's resolvers; keep nerdctl's hosts files in step", default: true, allowNo: true}),
    'dns-port': Flags.integer({description: 'port of the DNS listeners (53; another only for tests)', default: 53, min: 1, max: 65535}),
    'resolv-conf': Flags.string({description: 'where the upstream resolvers for other names are read', default: '/etc/resolv.conf'}),
    'nerdctl-data-root': Flags.string({description: "nerdctl's --data-root, whose hosts files are kept in step", default: '/var/lib/nerdctl'}),
    ...modeFlag,
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Daemon)
    const intervalMs = parseDuration(flags['reconcile-interval'], '--reconcile-interval')
    if (intervalMs === 0) throw new CtrnetError('--reconcile-interval', 'must be more than 0')
    const graceMs = parseDuration(flags.grace, '--grace')
    const s = runtimeSettings(flags)
    handEtcdHttp(() => import('../sys/etcd-http.js'))
    const {runDaemon, daemonLogger} = await import('../app/daemon/index.js')
    const format = flags['log-format'] ?? (process.stdout.isTTY ? 'text' : 'json')
    // pino-pretty only for text: nothing else of ctrnet loads it
    const dest = format === 'text' ? (await import('pino-pretty')).default({sync: true, singleLine: true, translateTime: 'SYS:standard', ignore: 'pid,hostname', colorize: Boolean(process.stdout.isTTY)}) : undefined
    const ac = new AbortController()
    const stop = () => ac.abort()
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
    try {
      const logger = daemonLogger(dest)
      const dns = flags.dns && !flags.once ? {port: flags['dns-port'], resolvConf: flags['resolv-conf'], nerdctlDataRoot: flags['nerdctl-data-root'], log: logger} : undefined
      const out = await runDaemon(s, {intervalMs, graceMs, once: flags.once, runDir: flags['run-dir'], log: logger, dns}, ac.signal)
      const r = out.report
      if (flags.once && r && (r.failed.length > 0 || r.refused.length > 0)) {
        throw new CtrnetError('daemon --once', `${r.failed.length} failed, ${r.refused.length} refused (see the log)`)
      }
      // the pass in flight did not finish within the stop's grace: leave anyway
      if (out.abandoned) process.exit(0)
    } finally {
      process.removeListener('SIGTERM', stop)
      process.removeListener('SIGINT', stop)
    }
  }
}

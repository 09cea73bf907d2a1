import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base-command.js'
import {modeFlag} from '../../cli/cni-flags.js'
import {runtimeSettings} from '../../cli/settings.js'
import {handEtcdHttp} from '../../sys/etcd-port.js'

export default class NetworkGc extends BaseCommand {
  static override description =
    'Release the attachments of containers that no longer run (addresses, iptables rules, cache entries), in every containerd namespace'
  static override examples = ['<%= config.bin %> network gc', '<%= config.bin %> network gc mynet --dry-run']
  static override strict = false
  static override args = {network: Args.string({description: 'networks to collect (default: every network with cached attachments)'})}
  static override flags = {...modeFlag, 'dry-run': Flags.boolean({description: 'list what would be released, change nothing'})}

  async run(): Promise<void> {
    const {argv, flags} = await this.parse(NetworkGc)
    // node:http/https for etcd (overlay networks), loaded at a client's first request
    handEtcdHttp(() => import('../../sys/etcd-http.js'))
    const {gcNetworks} = await import('../../app/gc.js')
    const results = await gcNetworks(
      runtimeSettings(flags),
      argv as string[],
      {dryRun: flags['dry-run']},
    )
    const errors: string[] = []
    for (const r of results) {
      for (const a of r.report.removed) {
        this.out(`${flags['dry-run'] ? 'would release' : 'released'} ${r.network} ${a.containerId} ${a.ifName}${a.pending ? ' [interrupted ADD]' : ''}`)
      }
      for (const c of r.labelsUpdated) this.out(`label updated ${c}`)
      errors.push(...r.report.errors)
    }
    if (errors.length) throw new Error(`network gc : ${errors.join('; ')}`)
  }
}

import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base-command.js'
import {modeFlag} from '../../cli/cni-flags.js'
import {runtimeSettings} from '../../cli/settings.js'
import {handEtcdHttp} from '../../sys/etcd-port.js'

export default class CniGc extends BaseCommand {
  static override description =
    'Garbage-collect a network: DEL every cached attachment that is not valid (default: whose netns no longer exists)'
  static override args = {network: Args.string({description: 'network name', required: true})}
  static override flags = {
    ...modeFlag,
    valid: Flags.string({description: 'a valid attachment, CONTAINERID[/IFNAME] (ifname default eth0); repeatable', multiple: true}),
    'dry-run': Flags.boolean({description: 'list what would be removed, change nothing'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(CniGc)
    // node:http/https for etcd (overlay networks), loaded at a client's first request
    handEtcdHttp(() => import('../../sys/etcd-http.js'))
    const {loadNetwork, makeRuntime} = await import('../../app/cni.js')
    const s = runtimeSettings(flags)
    const net = loadNetwork(s, args.network, (m) => this.warnLine(m))
    const valid = flags.valid?.map((v) => {
      const [containerId, ifName = 'eth0'] = v.split('/')
      return {containerId, ifName}
    })
    const report = await makeRuntime(s).gcNetworkList(net, valid, {dryRun: flags['dry-run']})
    for (const r of report.removed) {
      this.out(`${flags['dry-run'] ? 'would remove' : 'removed'} ${r.containerId} ${r.ifName}${r.netns ? ` (${r.netns})` : ''}${r.pending ? ' [interrupted ADD]' : ''}`)
    }
    if (report.errors.length) throw new Error(`gc ${args.network}: ${report.errors.join('; ')}`)
  }
}

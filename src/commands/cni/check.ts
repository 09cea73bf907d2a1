import {BaseCommand} from '../../cli/base-command.js'
import {attachmentArgs, attachmentFlags, flagsToAttachment, modeFlag} from '../../cli/cni-flags.js'
import {runtimeSettings} from '../../cli/settings.js'
import {handEtcdHttp} from '../../sys/etcd-port.js'

export default class CniCheck extends BaseCommand {
  static override description = "Run the CHECK command of a network's plugin chain against the cached result"
  static override args = attachmentArgs
  static override flags = {...attachmentFlags, ...modeFlag}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(CniCheck)
    // node:http/https for etcd (overlay networks), loaded at a client's first request
    handEtcdHttp(() => import('../../sys/etcd-http.js'))
    const {loadNetwork, makeRuntime, runtimeConfFromFlags} = await import('../../app/cni.js')
    const s = runtimeSettings(flags)
    const net = loadNetwork(s, args.network, (m) => this.warnLine(m))
    const rt = runtimeConfFromFlags(net, {...flagsToAttachment(flags), netns: args.netns})
    await makeRuntime(s).checkNetworkList(net, rt)
  }
}

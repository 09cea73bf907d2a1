import {BaseCommand} from '../../cli/base-command.js'
import {attachmentArgs, attachmentFlags, flagsToAttachment, modeFlag} from '../../cli/cni-flags.js'
import {runtimeSettings} from '../../cli/settings.js'
import {handEtcdHttp} from '../../sys/etcd-port.js'

export default class CniDel extends BaseCommand {
  static override description =
    "Run the DEL command of a network's plugin chain (reverse order, with the cached result); works when the netns is gone"
  static override args = attachmentArgs
  static override flags = {...attachmentFlags, ...modeFlag}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(CniDel)
    // node:http/https for etcd (overlay networks), loaded at a client's first request
    handEtcdHttp(() => import('../../sys/etcd-http.js'))
    const {loadNetwork, makeRuntime, runtimeConfFromFlags} = await import('../../app/cni.js')
    const s = runtimeSettings(flags)
    const net = loadNetwork(s, args.network, (m) => this.warnLine(m))
    const rt = runtimeConfFromFlags(net, {...flagsToAttachment(flags), netns: args.netns})
    await makeRuntime(s).delNetworkList(net, rt)
  }
}

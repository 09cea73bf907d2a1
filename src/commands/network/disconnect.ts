import {Args} from '@oclif/core'
import {BaseCommand} from '../../cli/base-command.js'
import {modeFlag} from '../../cli/cni-flags.js'
import {runtimeSettings} from '../../cli/settings.js'
import {handEtcdHttp} from '../../sys/etcd-port.js'

export default class NetworkDisconnect extends BaseCommand {
  static override description =
    'Disconnect a container from a network (CNI DEL with the cached result; works when its task has exited or the container is gone)'
  static override examples = ['<%= config.bin %> network disconnect mynet web']
  static override args = {
    network: Args.string({description: 'network name', required: true}),
    container: Args.string({description: 'container id, unique id prefix, or nerdctl/name', required: true}),
  }
  static override flags = {...modeFlag}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(NetworkDisconnect)
    // node:http/https for etcd (overlay networks), loaded at a client's first request
    handEtcdHttp(() => import('../../sys/etcd-http.js'))
    const {disconnectContainer} = await import('../../app/attach.js')
    await disconnectContainer(
      runtimeSettings(flags),
      {network: args.network, container: args.container},
    )
  }
}

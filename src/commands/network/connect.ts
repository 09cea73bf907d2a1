import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base-command.js'
import {modeFlag} from '../../cli/cni-flags.js'
import {runtimeSettings} from '../../cli/settings.js'

export default class NetworkConnect extends BaseCommand {
  static override description =
    "Connect a running containerd container to a network (CNI ADD in its network namespace; records the network in its nerdctl/networks label)"
  static override examples = [
    '<%= config.bin %> network connect mynet web -p 8080:80',
    '<%= config.bin %> network connect --ip 10.4.1.9 mynet web',
    '<%= config.bin %> network connect --alias api --alias api.internal mynet web',
  ]
  static override args = {
    network: Args.string({description: 'network name (bridge = the default network, created when missing)', required: true}),
    container: Args.string({description: 'container id, unique id prefix, or nerdctl/name', required: true}),
  }
  static override flags = {
    ip: Flags.string({description: 'IPv4 address to request (CNI_ARGS IP=, as nerdctl)'}),
    ip6: Flags.string({description: 'IPv6 address to request (capability "ips"; the network must be created with --ipv6)'}),
    publish: Flags.string({char: 'p', description: 'publish a port: [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO] (repeatable)', multiple: true, multipleNonGreedy: true}),
    ifname: Flags.string({description: 'interface name in the container (default: the next free ethN)'}),
    alias: Flags.string({description: "a further name of the container in the network's DNS (repeatable; kept in its ctrnet/networks label)", multiple: true}),
    ...modeFlag,
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(NetworkConnect)
    const {connectContainer} = await import('../../app/attach.js')
    await connectContainer(runtimeSettings(flags), args.network, args.container, {ifname: flags.ifname, ip: flags.ip, ip6: flags.ip6, publish: flags.publish, alias: flags.alias})
  }
}

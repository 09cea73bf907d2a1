import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base-command.js'
import {firewallBackendChoice, settings} from '../../cli/settings.js'

/** Go-style `--flag=true|false` for our boolean flags (oclif wants --flag / --no-flag). */
function goBoolArgs(argv: string[], names: string[]): string[] {
  return argv.map((a) => {
    const m = /^--([a-z0-9-]+)=(.*)$/.exec(a)
    if (!m || !names.includes(m[1]!)) return a
    const v = m[2]!
    if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return `--${m[1]}`
    if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return `--no-${m[1]}`
    return a
  })
}

export default class NetworkCreate extends BaseCommand {
  static override description = 'Create a network (writes the same conflist as nerdctl network create)'
  static override examples = [
    '<%= config.bin %> network create mynet',
    '<%= config.bin %> network create -d bridge --subnet 10.244.0.0/16 --gateway 10.244.0.1 mynet',
    '<%= config.bin %> network create --ipv6 --subnet 10.5.0.0/16 --subnet fd00:5::/64 dual',
    '<%= config.bin %> network create --firewall-backend nftables mynet',
    '<%= config.bin %> network create -d macvlan -o parent=eth0 --subnet 192.168.5.0/24 mv',
    '<%= config.bin %> network create -d overlay --subnet 10.200.0.0/16 -o etcd=http://10.0.0.10:2379 -o vni=4200 ovl',
  ]
  static override args = {
    name: Args.string({description: 'network name', required: true}),
  }
  static override flags = {
    driver: Flags.string({char: 'd', description: 'driver: bridge, macvlan, ipvlan or overlay (multi-host: -o etcd=URL -o vni=N)', default: 'bridge'}),
    opt: Flags.string({char: 'o', description: 'driver option KEY=VALUE (repeatable)', multiple: true, multipleNonGreedy: true}),
    'ipam-driver': Flags.string({description: 'IPAM driver: default, host-local or dhcp', default: 'default'}),
    'ipam-opt': Flags.string({description: 'IPAM driver option KEY=VALUE (repeatable; dhcp only)', multiple: true, multipleNonGreedy: true}),
    subnet: Flags.string({description: 'subnet in CIDR form, e.g. 10.5.0.0/16 (repeatable)', multiple: true, multipleNonGreedy: true}),
    gateway: Flags.string({description: 'gateway for the subnet that contains it (repeatable)', multiple: true, multipleNonGreedy: true}),
    'ip-range': Flags.string({description: 'allocate container IPs from this sub-range of the subnet that contains it (repeatable)', multiple: true, multipleNonGreedy: true}),
    label: Flags.string({description: 'label KEY=VALUE (repeatable)', multiple: true, multipleNonGreedy: true}),
    ipv6: Flags.boolean({description: 'enable IPv6', default: false, allowNo: true}),
    ipv4: Flags.boolean({description: 'enable IPv4 (--ipv4=false with --ipv6 and an IPv6 subnet: IPv6-only)', default: true, allowNo: true}),
    internal: Flags.boolean({description: 'restrict external access to the network', default: false, allowNo: true}),
    'firewall-backend': Flags.string({
      description:
        'firewall backend of the network: auto (nftables where the iptables programs are missing, else iptables, which writes nothing), iptables or nftables; written as bridge ipMasqBackend and portmap backend [default: $CTRNET_FIREWALL_BACKEND, else auto]',
    }),
    ignore: Flags.boolean({description: 'exit 0 and print the existing ID when a network of that name exists', default: false}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(NetworkCreate, goBoolArgs(this.argv, ['ipv4', 'ipv6', 'internal', 'ignore']))
    const firewallBackend = firewallBackendChoice(flags['firewall-backend'])
    const {createNetwork} = await import('../../app/networks/create.js')
    const res = await createNetwork(
      settings(flags),
      args.name,
      {
        driver: flags.driver,
        options: flags.opt ?? [],
        ipamDriver: flags['ipam-driver'],
        ipamOptions: flags['ipam-opt'] ?? [],
        subnets: flags.subnet ?? [],
        gateways: flags.gateway ?? [],
        ipRanges: flags['ip-range'] ?? [],
        labels: [...new Set(flags.label ?? [])],
        ipv6: flags.ipv6,
        ipv4: flags.ipv4,
        internal: flags.internal,
        firewallBackend,
      },
      {ignore: flags.ignore, warn: (m) => this.warnLine(m)},
    )
    this.out(res.id || res.name)
  }
}

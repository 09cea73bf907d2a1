import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base-command.js'
import {settings} from '../../cli/settings.js'

export default class NetworkDns extends BaseCommand {
  static override description =
    "List the DNS records `ctrnet daemon` serves on a network's gateways: each running container's name, id, short id and aliases, also as <name>.<network> (A, AAAA, PTR; TTL 0)"
  static override examples = ['<%= config.bin %> network dns mynet', '<%= config.bin %> network dns mynet --format json']
  static override args = {
    network: Args.string({description: 'network name or ID prefix', required: true}),
  }
  static override flags = {
    format: Flags.string({description: 'table or json', options: ['table', 'json'], default: 'table'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(NetworkDns)
    const {networkDnsRecords} = await import('../../app/networks/dns.js')
    const {records} = await networkDnsRecords(settings(flags), args.network, (m) => this.warnLine(m))
    if (flags.format === 'json') {
      process.stdout.write(JSON.stringify(records, null, 2) + '\n')
      return
    }
    const {tabwriter} = await import('../../cli/table.js')
    process.stdout.write(tabwriter([['NAME', 'TYPE', 'DATA'], ...records.map((r) => [r.name, r.type, r.data])]))
  }
}

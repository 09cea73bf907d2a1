import {Args} from '@oclif/core'
import {BaseCommand} from '../../cli/base-command.js'
import {firewallSettings} from '../../cli/settings.js'
import {CtrnetError} from '../../sys/errors.js'

export default class NetworkRm extends BaseCommand {
  static override aliases = ['network:remove']
  static override description =
    'Remove one or more networks (refuses host, none, the default bridge, networks not made by nerdctl/ctrnet, and networks in use)'
  static override strict = false
  static override examples = ['<%= config.bin %> network rm mynet', '<%= config.bin %> network rm 11c844f95e28 othernet']
  static override args = {
    network: Args.string({description: 'network name or ID prefix (one or more)', required: true}),
  }

  async run(): Promise<void> {
    const {argv, flags} = await this.parse(NetworkRm)
    const {removeNetworks} = await import('../../app/networks/remove.js')
    const {removed, errors} = await removeNetworks(firewallSettings(flags), argv as string[], (m) => this.warnLine(m))
    if (removed.length) process.stdout.write(removed.map((r) => r + '\n').join(''))
    if (errors.length) {
      for (const e of errors.slice(0, -1)) process.stderr.write(`ctrnet: network rm : ${e}\n`)
      throw new CtrnetError('network rm', errors[errors.length - 1]!)
    }
  }
}

import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base-command.js'
import {firewallSettings} from '../../cli/settings.js'

/** Reads the first whitespace-separated word from stdin ('' at end of input), like Go's Fscanf("%s"). */
async function readWord(): Promise<string> {
  const {createInterface} = await import('node:readline')
  const rl = createInterface({input: process.stdin, terminal: false})
  try {
    for await (const line of rl) {
      const w = line.trim().split(/\s+/)[0]
      if (w) return w
      return ''
    }
    return ''
  } finally {
    rl.close()
  }
}

export default class NetworkPrune extends BaseCommand {
  static override description = 'Remove all unused networks made by nerdctl/ctrnet (keeps host, none and bridge)'
  static override examples = ['<%= config.bin %> network prune', '<%= config.bin %> network prune -f']
  static override flags = {
    force: Flags.boolean({char: 'f', description: 'do not prompt for confirmation', default: false}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(NetworkPrune)
    if (!flags.force) {
      process.stdout.write(
        'WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ',
      )
      if ((await readWord()).toLowerCase() !== 'y') return
    }
    const {pruneNetworks} = await import('../../app/networks/remove.js')
    const {removed, errors} = await pruneNetworks(firewallSettings(flags), (m) => this.warnLine(m))
    for (const e of errors) process.stderr.write(`ctrnet: network prune : ${e}\n`)
    if (removed.length) process.stdout.write('Deleted Networks:\n' + removed.map((n) => n + '\n').join('') + '\n')
  }
}

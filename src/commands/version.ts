import {BaseCommand} from '../cli/base-command.js'

export default class Version extends BaseCommand {
  static override description = 'Print the ctrnet version'

  async run(): Promise<void> {
    await this.parse(Version)
    this.out(`ctrnet ${this.config.version}`)
  }
}

import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base-command.js'
import {CtrnetError} from '../../sys/errors.js'
import {settings} from '../../cli/settings.js'

export default class NetworkLs extends BaseCommand {
  static override aliases = ['network:list']
  static override description = 'List networks'
  static override examples = [
    '<%= config.bin %> network ls',
    "<%= config.bin %> network ls -f label=app=web --format '{{.ID}} {{.Name}}'",
    '<%= config.bin %> network ls --format json',
  ]
  static override flags = {
    quiet: Flags.boolean({char: 'q', description: 'only display network IDs', default: false}),
    format: Flags.string({description: "format: table, json, or a Go template over .ID .Name .Labels, e.g. '{{json .}}'", default: ''}),
    filter: Flags.string({
      char: 'f',
      description: 'filter: name=REGEX, label=KEY[=VALUE], driver=DRIVER, id=PREFIX (repeatable, ANDed)',
      multiple: true,
      multipleNonGreedy: true,
      delimiter: ',',
    }),
    'no-trunc': Flags.boolean({description: 'do not truncate network IDs', default: false}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(NetworkLs)
    const format = flags.format
    const table = format === '' || format === 'table' || format === 'wide'
    if (format === 'raw') throw new CtrnetError('network ls', 'unsupported format: "raw"')
    if (!table && flags.quiet) throw new CtrnetError('network ls', 'format and quiet must not be specified together')
    // Parse the template before reading anything, so a bad one fails fast.
    const tmpl = table ? undefined : (await import('../../cli/gotemplate.js')).parseFormat(format)
    const {listRows} = await import('../../app/networks/list.js')
    const rows = listRows(settings(flags), flags.filter ?? [], (m) => this.warnLine(m))
    const id = (r: (typeof rows)[number]) => (flags['no-trunc'] ? r.fullId : r.ID)
    let text = ''
    if (tmpl) {
      for (const r of rows) text += tmpl.execute({ID: id(r), Name: r.Name, Labels: r.Labels}) + '\n'
    } else if (flags.quiet) {
      for (const r of rows) if (id(r)) text += id(r) + '\n'
    } else {
      const {tabwriter} = await import('../../cli/table.js')
      text = tabwriter([['NETWORK ID', 'NAME', 'FILE'], ...rows.map((r) => [id(r), r.Name, r.file])])
    }
    process.stdout.write(text)
  }
}

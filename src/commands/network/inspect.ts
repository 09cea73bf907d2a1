import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base-command.js'
import {settings} from '../../cli/settings.js'
import {CtrnetError} from '../../sys/errors.js'
import {handEtcdHttp} from '../../sys/etcd-port.js'

export default class NetworkInspect extends BaseCommand {
  static override description = 'Display detailed information on one or more networks'
  static override strict = false
  static override examples = [
    '<%= config.bin %> network inspect mynet',
    "<%= config.bin %> network inspect --format '{{json .IPAM}}' mynet",
    '<%= config.bin %> network inspect --mode native 11c844f95e28',
  ]
  static override args = {
    network: Args.string({description: 'network name or ID prefix (one or more)', required: true}),
  }
  static override flags = {
    mode: Flags.string({description: 'dockercompat (Docker-compatible output) or native (the conflist as stored)', default: 'dockercompat'}),
    format: Flags.string({char: 'f', description: "format the output with a Go template, e.g. '{{json .}}'", default: ''}),
  }

  async run(): Promise<void> {
    const {argv, flags} = await this.parse(NetworkInspect)
    const format = flags.format
    if (['raw', 'table', 'wide'].includes(format)) {
      throw new CtrnetError('network inspect', 'unsupported format: "raw", "table", and "wide"')
    }
    const tmpl = format ? (await import('../../cli/gotemplate.js')).parseFormat(format) : undefined
    // node:http/https for etcd (overlay networks), loaded at a client's first request
    handEtcdHttp(() => import('../../sys/etcd-http.js'))
    const {inspectNetworks} = await import('../../app/networks/inspect.js')
    const {results, errors} = await inspectNetworks(settings(flags), argv as string[], flags.mode as 'dockercompat', (m) => this.warnLine(m))
    let text = ''
    if (results.length === 0) {
      // nothing to print (nerdctl: "unable to find any network matching the provided request")
    } else if (tmpl) {
      for (const r of results) text += tmpl.execute(r) + '\n'
    } else {
      // Go: json.Encoder with 4-space indent, no HTML escaping, then an extra newline.
      text = JSON.stringify(results, null, 4) + '\n\n'
    }
    process.stdout.write(text)
    if (errors.length) {
      // One line per request that failed; exit non-zero (docker does; nerdctl exits 0 when some were found).
      for (const e of errors.slice(0, -1)) process.stderr.write(`ctrnet: network inspect : ${e}\n`)
      throw new CtrnetError('network inspect', errors[errors.length - 1]!)
    }
    if (results.length === 0) {
      throw new CtrnetError('network inspect', 'unable to find any network matching the provided request')
    }
  }
}

import {BaseCommand} from '../../cli/base-command.js'
import {modeFlag} from '../../cli/cni-flags.js'
import {cniPluginEnv, runtimeSettings} from '../../cli/settings.js'

/** Reads the whole of stdin (the netconf a CNI runtime writes). */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

export default class CniPlugin extends BaseCommand {
  static override description =
    'Run as an exec\'d CNI plugin for the types ctrnet implements (overlay): CNI_* environment and netconf on stdin, result or CNI error on stdout. Install a wrapper "exec ctrnet cni plugin" as /opt/cni/bin/overlay so nerdctl or containerd run overlay conflists'
  static override examples = ['CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS=/var/run/netns/x CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin <%= config.bin %> cni plugin < overlay-netconf.json']
  static override flags = {...modeFlag}

  async run(): Promise<void> {
    const {flags} = await this.parse(CniPlugin)
    const {runAsCniPlugin} = await import('../../app/cni.js')
    const out = await runAsCniPlugin(runtimeSettings(flags), cniPluginEnv(), await readStdin())
    if (out.stdout) process.stdout.write(out.stdout + '\n')
    process.exitCode = out.exitCode
  }
}

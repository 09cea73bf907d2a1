import {join} from 'node:path'
import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base-command.js'
import {modeFlag} from '../../cli/cni-flags.js'
import {cniPluginEnv, runtimeSettings} from '../../cli/settings.js'
import {handEtcdHttp} from '../../sys/etcd-port.js'

/** Reads the whole of stdin (the netconf a CNI runtime writes). */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

export default class CniPlugin extends BaseCommand {
  static override description =
    'Run as an exec\'d CNI plugin for the type ctrnet implements (ctrnet-overlay, the plugin of `network create -d overlay`): CNI_* environment and netconf on stdin, result or CNI error on stdout. With --install, link it as /opt/cni/bin/ctrnet-overlay (ctrnet runs as this command under that name), so nerdctl or containerd\'s CRI run overlay conflists'
  static override examples = [
    '<%= config.bin %> cni plugin --install',
    'CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS=/var/run/netns/x CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin /opt/cni/bin/ctrnet-overlay < overlay-netconf.json',
  ]
  static override flags = {
    ...modeFlag,
    install: Flags.boolean({description: 'install the plugin as DIR/ctrnet-overlay (a symlink to ctrnet, made atomically) and print its path'}),
    // no oclif default: it would count as given, and dependsOn would refuse every plain run
    'cni-bin-dir': Flags.string({description: 'where --install puts ctrnet-overlay [default: /opt/cni/bin]', dependsOn: ['install']}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(CniPlugin)
    if (flags.install) {
      const {installCniPlugin} = await import('../../app/cni.js')
      // bin/run.js of this installation (the bundle is its dist/bundle/cli.cjs)
      this.out(installCniPlugin(flags['cni-bin-dir'] ?? '/opt/cni/bin', join(this.config.root, 'bin', 'run.js')))
      return
    }
    // node:http/https for etcd (overlay networks), loaded at a client's first request
    handEtcdHttp(() => import('../../sys/etcd-http.js'))
    const {runAsCniPlugin} = await import('../../app/cni.js')
    const out = await runAsCniPlugin(runtimeSettings(flags), cniPluginEnv(), await readStdin())
    if (out.stdout) process.stdout.write(out.stdout + '\n')
    process.exitCode = out.exitCode
  }
}

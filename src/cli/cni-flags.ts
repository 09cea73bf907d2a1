import {Args, Flags} from '@oclif/core'
import type {AttachmentFlags} from '../app/cni.js'

/** Flags of `ctrnet cni add|check|del`, as cnitool's environment variables. */
export const attachmentFlags = {
  'container-id': Flags.string({description: 'CNI container id (default: derived from the netns path, as cnitool does)'}),
  ifname: Flags.string({description: 'interface name inside the container', default: 'eth0'}),
  publish: Flags.string({char: 'p', description: 'port mapping [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO] (repeatable)', multiple: true}),
  ip: Flags.string({description: 'requested IP address'}),
  'cap-args': Flags.string({description: 'capability args as JSON, like cnitool CAP_ARGS', env: 'CAP_ARGS'}),
  'cni-args': Flags.string({description: "CNI_ARGS, 'K=V;K2=V2'", env: 'CNI_ARGS'}),
}

export const modeFlag = {
  'cni-mode': Flags.string({
    description: 'run plugins in-process (embedded) or as external binaries (exec)',
    env: 'CTRNET_CNI_MODE',
    options: ['embedded', 'exec'],
    default: 'embedded',
  }),
}

export const attachmentArgs = {
  network: Args.string({description: 'network name', required: true}),
  netns: Args.string({description: 'path of the network namespace, e.g. /var/run/netns/demo', required: true}),
}

/** The attachment flags in the shape runtimeConfFromFlags takes. */
export function flagsToAttachment(flags: {'container-id'?: string; ifname: string; publish?: string[]; ip?: string; 'cap-args'?: string; 'cni-args'?: string}): Omit<AttachmentFlags, 'netns'> {
  return {
    containerId: flags['container-id'],
    ifName: flags.ifname,
    publish: flags.publish ?? [],
    ip: flags.ip,
    capArgs: flags['cap-args'],
    cniArgs: flags['cni-args'],
  }
}

import Ajv2020Module from 'ajv/dist/2020.js'
import {CtrnetError} from '../sys/errors.js'
import {OVERLAY_TYPE} from '../plugins/overlay/config.js'
import {CREATED_NETWORK_NAME_RULE} from './names.js'

/**
 * JSON schema of the conflists ctrnet writes (nerdctl's shape). Every write is
 * validated against it first. Only the write path (netconf/create.ts) imports
 * this file, so read-only commands (`network ls`) never load ajv.
 */

const cidr = {type: 'string', minLength: 3, pattern: '^[0-9a-fA-F.:]+/[0-9]{1,3}$'}
const ip = {type: 'string', minLength: 2, pattern: '^[0-9a-fA-F.:]+$'}

const range = {
  type: 'object',
  additionalProperties: false,
  required: ['subnet'],
  properties: {gateway: ip, ipRange: cidr, rangeEnd: ip, rangeStart: ip, subnet: cidr},
}

const hostLocal = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'ranges'],
  properties: {
    type: {const: 'host-local'},
    ranges: {type: 'array', minItems: 1, items: {type: 'array', minItems: 1, items: range}},
    routes: {
      type: 'array',
      items: {type: 'object', additionalProperties: false, required: ['dst'], properties: {dst: cidr, gw: ip}},
    },
  },
}

const dhcp = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'daemonSocketPath'],
  properties: {
    type: {const: 'dhcp'},
    daemonSocketPath: {type: 'string', minLength: 1},
    provide: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['option', 'value', 'fromArg'],
        properties: {option: {type: 'string', minLength: 1}, value: {type: 'string'}, fromArg: {type: 'string'}},
      },
    },
    request: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['option', 'skipDefault'],
        properties: {option: {type: 'string', minLength: 1}, skipDefault: {type: 'boolean'}},
      },
    },
  },
}

const ipam = {oneOf: [hostLocal, dhcp]}
const ifName = {type: 'string', minLength: 1, maxLength: 15, pattern: '^[^/:\\s]+$', not: {enum: ['.', '..']}}
const mtu = {type: 'integer', minimum: 1}
/** an absolute file path without control characters */
const absPath = {type: 'string', pattern: '^/[^\\x00-\\x1f\\x7f]*$'}
const ipsCap = {type: 'object', additionalProperties: false, required: ['ips'], properties: {ips: {const: true}}}
/** bridge `ipMasqBackend`, portmap `backend` (firewall-backend.ts) */
const firewallBackend = {enum: ['iptables', 'nftables']}

const bridge = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'bridge', 'hairpinMode', 'ipam'],
  properties: {
    type: {const: 'bridge'},
    bridge: ifName,
    isGateway: {const: true},
    ipMasq: {const: true},
    ipMasqBackend: firewallBackend,
    mtu,
    hairpinMode: {const: true},
    ipam,
    capabilities: ipsCap,
  },
}

const vlan = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'master', 'ipam'],
  properties: {
    type: {enum: ['macvlan', 'ipvlan']},
    master: {type: 'string'},
    mode: {type: 'string', minLength: 1},
    mtu,
    ipam,
    capabilities: ipsCap,
  },
}

const overlay = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'etcd', 'vni', 'subnet', 'hostSubnetSize', 'bridge'],
  properties: {
    // ctrnet-overlay; overlay in conflists written before the exec'd plugin had its name
    type: {enum: [OVERLAY_TYPE, 'overlay']},
    etcd: {type: 'string', minLength: 1},
    etcdCert: absPath,
    etcdKey: absPath,
    etcdCa: absPath,
    vni: {type: 'integer', minimum: 1, maximum: 16777215},
    subnet: cidr,
    hostSubnetSize: {type: 'integer', minimum: 8, maximum: 30},
    underlay: {type: 'string', minLength: 1},
    mtu,
    leaseTTL: {type: 'integer', minimum: 5},
    bridge: ifName,
  },
}

const portmap = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'capabilities'],
  properties: {
    type: {const: 'portmap'},
    backend: firewallBackend,
    capabilities: {type: 'object', additionalProperties: false, required: ['portMappings'], properties: {portMappings: {const: true}}},
  },
}

const firewall = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'ingressPolicy'],
  properties: {
    type: {const: 'firewall'},
    backend: {enum: ['iptables', 'firewalld']},
    ingressPolicy: {enum: ['same-bridge', 'isolated']},
    // ctrnet's own (-o com.docker.network.bridge.gateway_mode_ipv4/ipv6=routed); the reference plugin ignores them
    gatewayModeIPv4: {const: 'routed'},
    gatewayModeIPv6: {const: 'routed'},
  },
}

const tuning = {type: 'object', additionalProperties: false, required: ['type'], properties: {type: {const: 'tuning'}}}

export const CONFLIST_SCHEMA = {
  $id: 'https://ctrnet.invalid/nerdctl-conflist.json',
  type: 'object',
  additionalProperties: false,
  required: ['cniVersion', 'name', 'nerdctlID', 'plugins'],
  properties: {
    cniVersion: {const: '1.0.0'},
    name: {type: 'string', pattern: CREATED_NETWORK_NAME_RULE},
    nerdctlID: {type: 'string', pattern: '^[0-9a-f]{64}$'},
    nerdctlLabels: {type: 'object', additionalProperties: {type: 'string'}},
    plugins: {
      type: 'array',
      minItems: 1,
      oneOf: [
        // bridge chains: bridge, portmap, firewall, tuning; with --internal no portmap
        {type: 'array', prefixItems: [bridge, portmap, firewall, tuning], minItems: 4, items: false},
        {type: 'array', prefixItems: [bridge, firewall, tuning], minItems: 3, items: false},
        {type: 'array', minItems: 1, maxItems: 1, items: vlan},
        // overlay: the meta plugin (delegating to bridge), portmap, firewall, tuning
        {type: 'array', prefixItems: [overlay, portmap, firewall, tuning], minItems: 4, items: false},
      ],
    },
  },
} as const

type Validator = ((data: unknown) => boolean) & {errors?: Array<{instancePath: string; message?: string}> | null}
let compiled: Validator | undefined

function validator(): Validator {
  if (compiled) return compiled
  // Ajv 2020 understands prefixItems. The package is CommonJS: depending on the
  // loader, the default import is its class or its exports object (.default).
  const mod = Ajv2020Module as unknown as {default?: unknown}
  const Ajv2020 = (mod.default ?? mod) as new (opts: object) => {compile(s: object): Validator}
  compiled = new Ajv2020({allErrors: false, strict: false}).compile(CONFLIST_SCHEMA)
  return compiled
}

/** Throws CtrnetError(what, ...) when conf does not match the schema of what we write. */
export async function validateConflist(what: string, conf: unknown): Promise<void> {
  const validate = validator()
  if (!validate(conf)) {
    const e = validate.errors?.[0]
    throw new CtrnetError(what, `refusing to write an invalid conflist: ${e?.instancePath || '/'} ${e?.message ?? 'is invalid'}`)
  }
}

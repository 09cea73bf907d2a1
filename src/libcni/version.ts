import {CNI_ERR, CniError, type CniResult, type CniIpConfig} from '../plugins/types.js'

/** Spec versions whose configs and results the runtime speaks. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const

function parts(v: string): number[] {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(v)
  if (!m) throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, 'invalid version', `"${v}" is not a semantic version`)
  return [Number(m[1]), Number(m[2]), Number(m[3])]
}

/** Compares two spec versions: negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const pa = parts(a)
  const pb = parts(b)
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i] - pb[i]
  return 0
}

export function versionAtLeast(v: string, min: string): boolean {
  return compareVersions(v, min) >= 0
}

export function assertSupportedVersion(v: string): void {
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(v)) {
    throw new CniError(
      CNI_ERR.INCOMPATIBLE_VERSION,
      'incompatible CNI versions',
      `config is "${v}", ctrnet supports ${SUPPORTED_VERSIONS.map((x) => `"${x}"`).join(', ')}`,
    )
  }
}

function ipVersion(address: string): '4' | '6' {
  return address.includes(':') ? '6' : '4'
}

/**
 * Reads a result of any supported version into the internal 1.x form.
 * Throws a decoding CniError for anything that is not a result.
 */
export function toInternalResult(raw: unknown): CniResult {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CniError(CNI_ERR.DECODING_FAILURE, 'failed to decode result', 'not a JSON object')
  }
  const r = raw as Record<string, unknown>
  const v = typeof r.cniVersion === 'string' ? r.cniVersion : ''
  if (!v) throw new CniError(CNI_ERR.DECODING_FAILURE, 'failed to decode result', 'no cniVersion')
  parts(v)
  if (compareVersions(v, '0.3.0') < 0) {
    throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, 'unsupported result version', `result version "${v}" is older than 0.3.0`)
  }
  for (const key of ['interfaces', 'ips', 'routes'] as const) {
    if (r[key] !== undefined && r[key] !== null && !Array.isArray(r[key])) {
      throw new CniError(CNI_ERR.DECODING_FAILURE, 'failed to decode result', `"${key}" is not a list`)
    }
  }
  const out: CniResult = {...(r as CniResult), cniVersion: '1.0.0'}
  if (Array.isArray(r.ips)) {
    out.ips = (r.ips as Array<Record<string, unknown>>).map((ip) => {
      if (!ip || typeof ip.address !== 'string') {
        throw new CniError(CNI_ERR.DECODING_FAILURE, 'failed to decode result', 'an ip entry has no address')
      }
      const {version: _v, ...rest} = ip
      return rest as unknown as CniIpConfig
    })
  }
  if (compareVersions(v, '1.0.0') >= 0) out.cniVersion = v
  return out
}

/** Converts an internal (1.x) result to the given spec version for output or prevResult. */
export function resultAsVersion(result: CniResult, version: string): CniResult {
  const out: CniResult = {...result, cniVersion: version}
  if (compareVersions(version, '1.0.0') < 0) {
    if (result.ips) out.ips = result.ips.map((ip) => ({version: ipVersion(ip.address), ...ip}) as CniIpConfig)
  } else if (result.ips) {
    out.ips = result.ips.map((ip) => {
      const {version: _v, ...rest} = ip as CniIpConfig & {version?: string}
      return rest
    })
  }
  if (!out.dns) out.dns = {}
  return out
}

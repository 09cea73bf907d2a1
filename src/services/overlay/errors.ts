/**
 * A failure of the overlay service that its callers tell apart: `config`, the
 * network's overlay entry is not valid; `underlay`, this host's underlay
 * interface cannot be found or read; `etcd`, etcd is unreachable or refuses
 * (worth a retry). The message is the whole line (`overlay: ...`, `etcd
 * ...`); the plugin gives each kind its CNI error code, the daemon and the
 * network commands print the message.
 */
export type OverlayFault = 'config' | 'underlay' | 'etcd'

export class OverlayError extends Error {
  constructor(
    readonly fault: OverlayFault,
    message: string,
  ) {
    super(message)
    this.name = 'OverlayError'
  }
}

/**
 * What ctrnet logs with: pino's call shape (an object of fields, then the
 * message). The daemon, its names service and the DNS server take one; tests
 * may pass anything with these methods.
 */
export interface Logger {
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

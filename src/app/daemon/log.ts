import pino, {type DestinationStream, type Logger} from 'pino'

/**
 * The daemon's log: pino, one JSON object per line on stdout (journald keeps
 * them as they are), with an ISO time. Each action is one line with
 * container, namespace, network, action, ms and outcome (reason when it
 * failed).
 */
export function daemonLogger(dest?: DestinationStream): Logger {
  return pino({base: {pid: process.pid}, timestamp: pino.stdTimeFunctions.isoTime}, dest ?? pino.destination({dest: 1, sync: true}))
}

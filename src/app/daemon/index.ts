/** The daemon use case, as `ctrnet daemon` imports it. */
export {daemonLogger} from './log.js'
export {runDaemon} from './run.js'

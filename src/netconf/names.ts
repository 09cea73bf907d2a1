import {NETWORK_NAME_RULE} from '../sys/names.js'

/** nerdctl's default network (the label that marks another network as the default: labels.ts). */
export const DEFAULT_NETWORK_NAME = 'bridge'

/** nerdctl's rule for the name of a network it creates: the network-name rule, with two characters at least. */
export const CREATED_NETWORK_NAME_RULE = NETWORK_NAME_RULE.replace(/\*\$$/, '+$')

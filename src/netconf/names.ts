/** nerdctl's default network: its name, and the label that marks another network as the default. */
export const DEFAULT_NETWORK_NAME = 'bridge'
export const DEFAULT_NETWORK_LABEL = 'nerdctl/default-network'

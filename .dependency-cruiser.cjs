// The layers of docs/architecture.md, top to bottom. A module may import its
// own layer and any layer below it, never one above. Cycles between folders
// (which dependency-cruiser's rules do not see) are checked by
// scripts/lint-deps.js, which runs this configuration.
const LAYERS = ['commands', 'cli', 'app', 'netconf', 'libcni', 'plugins', 'services', 'kernel', 'containerd', 'sys']

const upward = LAYERS.slice(1).map((layer, i) => ({
  name: `no-upward-from-${layer}`,
  comment: `src/${layer}/ imports only the layers below it: ${LAYERS.slice(i + 2).join(', ')}`,
  severity: 'error',
  from: {path: `^src/${layer}/`},
  to: {path: `^src/(${LAYERS.slice(0, i + 1).join('|')})/`},
}))

module.exports = {
  forbidden: [
    ...upward,
    {
      name: 'no-circular',
      severity: 'error',
      from: {},
      to: {circular: true},
    },
    {
      name: 'processes-only-in-kernel-and-sys',
      comment: 'only src/kernel/ and src/sys/ spawn processes',
      severity: 'error',
      from: {path: '^src/', pathNot: '^src/(kernel|sys)/'},
      to: {path: '^(node:)?child_process$'},
    },
    {
      name: 'plugins-apart',
      comment: 'a plugin never imports another plugin: IPAM goes through the runtime hook; only the files at the root of src/plugins/ are shared; the registry (src/plugins/registry/) is the one module that imports every plugin',
      severity: 'error',
      from: {path: '^src/plugins/([^/]+)/', pathNot: '^src/plugins/registry/'},
      to: {path: '^src/plugins/[^/]+/', pathNot: '^src/plugins/$1/'},
    },
    {
      name: 'plugins-through-the-firewall-seam',
      comment: 'plugins state their firewall needs through kernel/netfilter/firewall.ts (the request\'s transaction); the rules are the backends\' (a folder each under kernel/netfilter/), picked in kernel/netfilter/backends/ (which plugins may ask for the programs of a chain)',
      severity: 'error',
      from: {path: '^src/plugins/'},
      to: {path: '^src/kernel/netfilter/[^/]+/', pathNot: '^src/kernel/netfilter/backends/'},
    },
    {
      name: 'containerd-is-only-a-client',
      comment: 'src/containerd/ is the gRPC client: no CNI, no kernel',
      severity: 'error',
      from: {path: '^src/containerd/'},
      to: {path: '^src/', pathNot: '^src/(containerd|sys)/'},
    },
    {
      name: 'no-orphans',
      severity: 'error',
      from: {orphan: true, path: '^src/', pathNot: '\\.d\\.ts$'},
      to: {},
    },
  ],
  options: {
    doNotFollow: {path: 'node_modules'},
    tsPreCompilationDeps: true,
    tsConfig: {fileName: 'tsconfig.json'},
    enhancedResolveOptions: {exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default']},
  },
}

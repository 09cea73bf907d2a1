// ESLint with typescript-eslint's recommended rules over src/ and test/.
// The layer rules live in .dependency-cruiser.cjs (npm run lint runs both).
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  {ignores: ['dist/', 'node_modules/', 'oclif.manifest.json']},
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {globals: {process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setImmediate: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', URL: 'readonly', performance: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly', queueMicrotask: 'readonly', __filename: 'readonly'}},
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none'}],
    },
  },
  {
    // TypeScript checks names itself (typescript-eslint's advice for TS files)
    files: ['**/*.ts'],
    rules: {'no-undef': 'off'},
  },
  {
    // e2e tests load the built dist/ modules, which have no types
    files: ['test/**'],
    rules: {'@typescript-eslint/no-explicit-any': 'off'},
  },
  {
    // Lazy loading happens at one place, the command boundary: each command
    // imports its app module when it runs, and the base command hands the etcd
    // client its lazily loaded HTTP modules. Below that, imports are static.
    files: ['src/**/*.ts'],
    ignores: ['src/commands/**', 'src/cli/base-command.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {selector: 'ImportExpression', message: 'import() only in src/commands/: lower layers import statically'},
        {selector: "CallExpression[callee.property.name='createRequire'], CallExpression[callee.name='createRequire']", message: 'createRequire only in src/commands/: lower layers import statically'},
      ],
      'no-restricted-imports': [
        'error',
        {
          paths: ['node:module', 'module'].map((name) => ({name, importNames: ['createRequire'], message: 'createRequire only in src/commands/: lower layers import statically'})),
        },
      ],
      'no-restricted-properties': ['error', {object: 'process', property: 'getBuiltinModule', message: 'loading a module at run time only in src/commands/: lower layers import statically'}],
    },
  },
)

// Lint: typescript-eslint's recommended rules over the TypeScript tree, checked in `npm test`.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'build/', 'fixtures/', 'test-artifacts/', '**/*.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // Test helpers run as CommonJS children (OVH's npm client is CommonJS).
    files: ['**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: { require: 'readonly', process: 'readonly', console: 'readonly', module: 'writable' },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    rules: {
      // Tests and a few boundaries parse untyped JSON; `any` there is deliberate and local.
      '@typescript-eslint/no-explicit-any': 'off',
      // Validation rejects control characters on purpose: the patterns name them.
      'no-control-regex': 'off',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
    },
  },
);

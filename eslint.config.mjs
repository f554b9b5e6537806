// ESLint 9 flat config: `npm run lint` (CI runs it) and `npm run lint:fix`.
// typescript-eslint's recommended rules (syntactic only: no type information, so it stays fast)
// plus @stylistic rules that serve as the formatter check. scripts/check-line-length.js applies
// the same 120-character limit to the C++ sources.
import stylistic from '@stylistic/eslint-plugin';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    // Directives for rules not enabled here (type-checked ones such as no-implied-eval, core
    // no-console) are kept as documentation; do not report them as unused.
    linterOptions: { reportUnusedDisableDirectives: 'off' },
  },
  {
    ignores: ['dist/**', 'build/**', 'build-*/**', 'node_modules/**', 'prebuilds/**', 'runs/**', 'parity/**'],
  },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.{ts,js,mjs,cjs}'],
    plugins: { '@stylistic': stylistic },
    rules: {
      // The formatter check.
      '@stylistic/max-len': ['error', {
        code: 120,
        tabWidth: 2,
        ignoreUrls: true,
        ignoreStrings: false,
        ignoreTemplateLiterals: false,
        ignoreRegExpLiterals: false,
      }],
      '@stylistic/semi': ['error', 'always'],
      // Template literals without substitutions are kept where they sit among interpolated siblings
      // (src/bench/svg.ts builds SVG lines that way).
      '@stylistic/quotes': ['error', 'single', { avoidEscape: true, allowTemplateLiterals: 'always' }],
      // The value of a multi-line mapped type (`[K in keyof T as …]:\n    T[K] extends …`, WithAsync in
      // src/native/types.ts) is indented as a continuation; the rule would put it level with the key.
      '@stylistic/indent': ['error', 2, { SwitchCase: 1, ignoredNodes: ['TSMappedType > *'] }],
      '@stylistic/no-trailing-spaces': 'error',
      '@stylistic/eol-last': ['error', 'always'],

      // Deliberate patterns in this code base, not mistakes:
      // `_`-prefixed parameters and destructured-away fields mark values kept for a signature or
      // dropped on purpose (`const { a, ...rest } = x`).
      '@typescript-eslint/no-unused-vars': ['error', {
        argsIgnorePattern: '^_',
        varsIgnorePattern: '^_',
        caughtErrors: 'none',
        ignoreRestSiblings: true,
      }],
    },
  },
  {
    // Tests build deliberately malformed configs and arguments (`Record<string, any>`) to check that
    // validation names the bad field.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // bin/ and scripts/ are plain CommonJS run by node directly (no build step): require() is how
    // they load modules, including the compiled dist/ and the addon.
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs' },
    rules: {
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
);

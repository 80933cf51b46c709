// ESLint for app/static/*.js (`make lint`): ESLint's recommended rules, the ones that catch a statement or value
// that does nothing, and a local rule for code swallowed by a // comment.
import js from "@eslint/js";
import globals from "globals";

import noSwallowedCode from "./scripts/eslint/no-swallowed-code.mjs";

export default [
  { ignores: ["node_modules/", ".venv/", "docs/", "site/", "build/", "dist/"] },
  js.configs.recommended,
  {
    files: ["app/static/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "script",  // classic <script src> files, each in strict mode
      globals: { ...globals.browser, Plotly: "readonly" },
    },
    plugins: { fitboard: { rules: { "no-swallowed-code": noSwallowedCode } } },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      "fitboard/no-swallowed-code": "error",
      "no-unused-vars": ["error", { args: "after-used", caughtErrors: "all" }],
      "no-unused-expressions": ["error", { enforceForJSX: true }],
      "no-useless-call": "error",
      "no-useless-return": "error",
      "no-self-compare": "error",
      "no-unmodified-loop-condition": "error",
      "no-unreachable-loop": "error",
      "no-constant-binary-expression": "error",
      "no-implicit-globals": "error",
      "no-var": "error",
      "prefer-const": "error",
      "eqeqeq": ["error", "always"],
      "strict": ["error", "global"],
    },
  },
  {
    files: ["app/static/docs.js"],
    languageOptions: { globals: { SwaggerUIBundle: "readonly" } },  // from the vendored swagger-ui-bundle.js
  },
  {
    files: ["eslint.config.mjs", "scripts/eslint/**/*.mjs"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.node },
  },
];

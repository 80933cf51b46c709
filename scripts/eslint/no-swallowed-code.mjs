// A local ESLint rule: a `//` comment whose tail is code. A trailing comment written in the middle of a call
// swallows the rest of the line (run.js once lost two table cells this way) and the file still parses, so no
// core rule sees it. The rule reads each line comment, tries every word boundary as the start of code, and
// reports a tail that parses as JavaScript and calls something: prose mentioning `f(x)` in passing does not end
// in a parseable call list, commented-out code does.
import * as espree from "espree";

const OPTIONS = { ecmaVersion: "latest", sourceType: "script" };

// Tails worth parsing: start at a word boundary, hold a call, end where code ends (a comma, semicolon,
// closing bracket, or the call itself).
const CANDIDATE = /[\w$.]+\s*\(.*[),;\]}]\s*$/;

function hasCall(node) {
  if (!node || typeof node.type !== "string") return false;
  if (node.type === "CallExpression" || node.type === "NewExpression") return true;
  return Object.entries(node).some(([key, value]) => key !== "parent" && (Array.isArray(value)
    ? value.some(hasCall) : value && typeof value === "object" && hasCall(value)));
}

function parses(code) {
  // As statements ("f(x);"), or as the arguments/elements of a list it was cut out of ("f(x), g(y),").
  for (const wrapped of [code, `[${code}]`, `[${code.replace(/;\s*$/, "")}]`]) {
    try {
      const ast = espree.parse(wrapped, OPTIONS);
      if (hasCall(ast)) return true;
    } catch {
      // not code in this form; try the next
    }
  }
  return false;
}

/** The tail of a comment that is code, or null. */
export function swallowedCode(text) {
  const starts = [0, ...[...text.matchAll(/\s+/g)].map((m) => m.index + m[0].length)];
  for (const start of starts) {
    const tail = text.slice(start).trim();
    if (tail && CANDIDATE.test(tail) && parses(tail)) return tail;
  }
  return null;
}

export default {
  meta: {
    type: "problem",
    docs: { description: "disallow code inside a // comment (a comment that swallowed the rest of a line)" },
    schema: [],
    messages: { swallowed: "This // comment ends in code ({{code}}): a comment swallowed it, or it is dead code." },
  },
  create(context) {
    return {
      Program() {
        for (const comment of context.sourceCode.getAllComments()) {
          if (comment.type !== "Line") continue;
          const code = swallowedCode(comment.value);
          if (code) context.report({ loc: comment.loc, messageId: "swallowed", data: { code: code.slice(0, 60) } });
        }
      },
    };
  },
};

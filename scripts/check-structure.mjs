#!/usr/bin/env node
// The house rules `npm test` holds, over the Rust sources of `core/src` and `src`:
//   1. no import circle among the modules (one module per file);
//   2. no function longer than MAX_FN_LINES lines.
// Prints every breach and exits 1 if there is one.
//
// A module's edges are the modules it names: `use crate::a::b`, `crate::a::f()`,
// `super::x`, `self::x`, and a child module named bare (`x::f()`). A `mod x;`
// declaration alone is not an edge: declaring a child is not depending on it.
// `bw_ledger_core::a` names another crate, never part of a circle in `src/`.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";

const ROOT = new URL("..", import.meta.url).pathname;
const MAX_FN_LINES = 80;

function rustFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return rustFiles(path);
    return name.endsWith(".rs") ? [path] : [];
  });
}

// Module path of a file: src/objects/ledger/mod.rs -> ["objects", "ledger"].
function modulePath(srcDir, file) {
  const parts = relative(srcDir, file).replace(/\.rs$/, "").split("/");
  if (parts.at(-1) === "mod" || (parts.length === 1 && parts[0] === "lib")) parts.pop();
  return parts;
}

// Strips comments, string and char literals (a scanner, not regexes: a string
// may hold `//`, and a comment may hold a quote), so that none makes an edge
// or a brace. Newlines are kept, so line numbers stay true.
function code(text) {
  let out = "";
  let i = 0;
  const keepNewlines = (s) => s.replace(/[^\n]/g, "");
  while (i < text.length) {
    const rest = text.slice(i, i + 3);
    const prev = text[i - 1] ?? " ";
    if (rest.startsWith("//")) {
      const end = text.indexOf("\n", i);
      i = end < 0 ? text.length : end;
    } else if (rest.startsWith("/*")) {
      const end = text.indexOf("*/", i + 2) + 2;
      out += keepNewlines(text.slice(i, end));
      i = end;
    } else if (text[i] === "r" && /[#"]/.test(text[i + 1]) && !/[A-Za-z0-9_]/.test(prev)) {
      const m = text.slice(i).match(/^r(#*)"/);
      if (!m) { out += text[i++]; continue; }
      const close = '"' + m[1];
      const end = text.indexOf(close, i + m[0].length) + close.length;
      out += '""' + keepNewlines(text.slice(i, end));
      i = end;
    } else if (text[i] === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += '""' + keepNewlines(text.slice(i, j + 1));
      i = j + 1;
    } else if (text[i] === "'") {
      // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a), which stays.
      const m = text.slice(i).match(/^'(?:[^'\\]|\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.))'/);
      if (m) { out += "' '"; i += m[0].length; } else out += text[i++];
    } else out += text[i++];
  }
  return out;
}

// Every path a module names, as absolute module paths (before resolution).
function namedPaths(self, text) {
  const paths = [];
  const push = (base, rest) => paths.push([...base, ...rest.split("::").filter(Boolean)]);
  const parent = (n) => self.slice(0, Math.max(0, self.length - n));
  // `use` trees: expand one level of braces, which is how the code writes them.
  for (const m of text.matchAll(/\buse\s+([^;]+);/g)) {
    const tree = m[1].replace(/\s+/g, "");
    const brace = tree.indexOf("{");
    const heads = brace < 0 ? [tree] : splitTop(tree.slice(brace + 1, -1)).map((t) => tree.slice(0, brace) + t);
    for (const head of heads) qualify(head);
  }
  for (const m of text.matchAll(/\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)/g)) qualify(m[1]);
  // A child module named bare (`reads::message(..)`, `use archiver::Lanes`)
  // is a dependency on it too, as a name starting with `crate::` would be.
  const children = [...text.matchAll(/\bmod\s+([a-z_][a-z0-9_]*)\s*;/g)].map((m) => m[1]);
  for (const child of children) {
    const bare = new RegExp(`(?<![A-Za-z0-9_:])${child}::`, "g");
    if (bare.test(text.replace(/\bmod\s+[a-z_][a-z0-9_]*\s*;/g, ""))) paths.push([...self, child]);
  }
  function qualify(p) {
    const path = p.split("{")[0];
    if (path.startsWith("crate::")) push([], path.slice(7));
    else if (path.startsWith("super::")) {
      let rest = path, up = 0;
      while (rest.startsWith("super::")) { rest = rest.slice(7); up++; }
      push(parent(up), rest);
    } else if (path.startsWith("self::")) push(self, path.slice(6));
  }
  return paths;
}

function splitTop(s) {
  const out = [];
  let depth = 0, start = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "{") depth++;
    else if (s[i] === "}") depth--;
    else if (s[i] === "," && depth === 0) { out.push(s.slice(start, i)); start = i + 1; }
  }
  out.push(s.slice(start));
  return out.filter(Boolean);
}

function circles(srcDir) {
  const files = rustFiles(srcDir);
  const modules = new Map(files.map((f) => [modulePath(srcDir, f).join("::"), f]));
  const edges = new Map();
  for (const [name, file] of modules) {
    const self = name ? name.split("::") : [];
    const to = new Set();
    for (const path of namedPaths(self, code(readFileSync(file, "utf8")))) {
      // The longest prefix that is a module file is what this path depends on.
      for (let n = path.length; n >= 0; n--) {
        const target = path.slice(0, n).join("::");
        if (modules.has(target)) {
          if (target !== name) to.add(target);
          break;
        }
      }
    }
    edges.set(name, to);
  }
  return stronglyConnected(edges).filter((c) => c.length > 1).map((c) => c.map((m) => relative(ROOT, modules.get(m))));
}

// Tarjan's algorithm.
function stronglyConnected(edges) {
  let index = 0;
  const idx = new Map(), low = new Map(), stack = [], on = new Set(), out = [];
  const visit = (v) => {
    idx.set(v, index); low.set(v, index); index++;
    stack.push(v); on.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v), low.get(w))); }
      else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const c = [];
      let w;
      do { w = stack.pop(); on.delete(w); c.push(w); } while (w !== v);
      out.push(c.sort());
    }
  };
  for (const v of edges.keys()) if (!idx.has(v)) visit(v);
  return out;
}

// Functions over the limit: from a line opening an `fn` to its closing brace,
// counted by brace depth over the comment- and string-free text.
function longFunctions(srcDir) {
  const found = [];
  for (const file of rustFiles(srcDir)) {
    const lines = code(readFileSync(file, "utf8")).split("\n");
    for (let i = 0; i < lines.length; i++) {
      const m = lines[i].match(/^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+([A-Za-z0-9_]+)/);
      if (!m) continue;
      let depth = 0, opened = false, j = i;
      for (; j < lines.length; j++) {
        for (const ch of lines[j]) {
          if (ch === "{") { depth++; opened = true; }
          else if (ch === "}") depth--;
          else if (ch === ";" && !opened && depth === 0) break;
        }
        if ((opened && depth === 0) || (!opened && /;\s*$/.test(lines[j]))) break;
      }
      const length = j - i + 1;
      if (opened && length > MAX_FN_LINES) found.push(`${relative(ROOT, file)}:${i + 1} ${m[1]} (${length} lines)`);
    }
  }
  return found;
}

// The source roots to check: the arguments, or the project's two crates.
const roots = process.argv.length > 2 ? process.argv.slice(2) : ["core/src", "src"];
let failed = false;
for (const dir of roots) {
  const root = resolve(ROOT, dir);
  for (const c of circles(root)) {
    failed = true;
    console.error(`import circle: ${c.join(" <-> ")}`);
  }
  for (const f of longFunctions(root)) {
    failed = true;
    console.error(`function over ${MAX_FN_LINES} lines: ${f}`);
  }
}
if (failed) process.exit(1);
console.log(`structure: no import circle, no function over ${MAX_FN_LINES} lines in ${roots.join(" and ")}`);

// The house-rules checker (scripts/check-structure.mjs) itself: it must
// fail on an import circle (through `crate::`, `super::` or a bare child
// module) and on a long function, and pass clean code, or its green run in
// `npm test` would prove nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CHECKER = new URL('../../scripts/check-structure.mjs', import.meta.url).pathname;

function crate(files) {
  const dir = mkdtempSync(join(tmpdir(), 'structure-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

function check(dir) {
  const run = spawnSync(process.execPath, [CHECKER, dir], { encoding: 'utf8' });
  return { code: run.status, out: run.stdout + run.stderr };
}

const fn = (name, lines) => `pub fn ${name}() {\n${'    let _x = 1;\n'.repeat(lines - 2)}}\n`;

test('clean code passes', () => {
  const dir = crate({
    'lib.rs': 'mod a;\nmod b;\npub use a::f;\n',
    'a.rs': 'use crate::b::g;\n' + fn('f', 80),
    'b.rs': '// crate::a::f is named in a comment only\npub fn g() { let _s = "crate::a::f"; }\n',
  });
  const { code, out } = check(dir);
  assert.equal(code, 0, out);
});

test('a circle through crate:: paths fails', () => {
  const dir = crate({
    'lib.rs': 'mod a;\nmod b;\n',
    'a.rs': 'use crate::b::g;\npub fn f() { g() }\n',
    'b.rs': 'pub fn g() { crate::a::f() }\n',
  });
  const { code, out } = check(dir);
  assert.equal(code, 1);
  assert.match(out, /import circle: .*a\.rs <-> .*b\.rs/);
});

test('a parent and a child naming each other fail', () => {
  const dir = crate({
    'lib.rs': 'mod shard;\n',
    'shard/mod.rs': 'mod ingest;\npub struct Shard;\npub fn serve() { ingest::run() }\n',
    'shard/ingest.rs': 'use super::Shard;\npub fn run() { let _ = Shard; }\n',
  });
  const { code, out } = check(dir);
  assert.equal(code, 1);
  assert.match(out, /import circle: .*shard\/mod\.rs <-> .*shard\/ingest\.rs/);
});

test('a function over 80 lines fails, with its name and length', () => {
  const dir = crate({ 'lib.rs': fn('long_one', 81) });
  const { code, out } = check(dir);
  assert.equal(code, 1);
  assert.match(out, /function over 80 lines: .*lib\.rs:1 long_one \(81 lines\)/);
});

// After the end-to-end suite (scripts/test.sh): no secret appears in any log
// of the whole run. Every Worker the suite started logged into
// E2E_RUN_DIR, beside the secrets it was given (harness.mjs). A log line
// fails the check when it holds:
// - any secret value a Worker was configured with (callback and API
//   passwords and tokens, Bandwidth client secrets, whsec_ secrets);
// - any word whose SHA-256 is a configured client key's hash: the raw keys
//   the tests presented, which no config names;
// - anything shaped like a credential: an Authorization value (`Bearer …`,
//   `Basic …`), a `token=` query value, a `token.` subprotocol, a whsec_
//   secret, or an access token the fake Bandwidth issued (`tok-N`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const RUN_DIR = process.env.E2E_RUN_DIR;

const SHAPES = [
  [/Bearer\s+(?!\[redacted\])[^\s"'\[]/, 'a Bearer credential'],
  [/Basic\s+(?!\[redacted\])[A-Za-z0-9+/=]{6,}/, 'a Basic credential'],
  [/[?&]token=(?!\[redacted\])[^&\s"']+/, 'a token= query value'],
  [/\btoken\.(?!\[redacted\])[A-Za-z0-9]/, 'a token. subprotocol'],
  [/whsec_(?!\[redacted\])[A-Za-z0-9+/=]/, 'a whsec_ secret'],
  [/\btok-\d+\b/, 'an access token of the fake Bandwidth'],
];

/** The problems in `text`, given the secrets; each names its line. */
export function findSecrets(text, { values, keyHashes }) {
  const found = [];
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    for (const v of values) if (line.includes(v)) found.push(`line ${i + 1}: a configured secret`);
    for (const [re, what] of SHAPES) if (re.test(line)) found.push(`line ${i + 1}: ${what}`);
    if (keyHashes.size) {
      for (const word of line.split(/[^A-Za-z0-9_.~+/=-]+/)) {
        if (word.length >= 6 && keyHashes.has(createHash('sha256').update(word).digest('hex'))) {
          found.push(`line ${i + 1}: a client key`);
        }
      }
    }
  });
  return found;
}

test('the detector finds each kind of secret (so the check below can fail)', () => {
  const secrets = { values: ['callback-pass-1'], keyHashes: new Set([createHash('sha256').update('raw-client-key').digest('hex')]) };
  const lines = [
    '{"level":"warn","msg":"rejected callback-pass-1"}',
    '{"level":"error","msg":"upstream said no to raw-client-key"}',
    '{"msg":"Authorization: Bearer abc"}',
    '{"msg":"Basic dXNlcjpwYXNz"}',
    'GET /live?token=s3cret',
    'offered token.abc',
    'secret whsec_QUJD',
    'used tok-12',
  ];
  for (const line of lines) assert.equal(findSecrets(line, secrets).length, 1, line);
  assert.deepEqual(findSecrets('{"level":"info","route":"GET /live","status":101} Bearer [redacted] token=[redacted]', secrets), []);
});

test('no log of the run holds a secret', { skip: !RUN_DIR && 'run by scripts/test.sh after the e2e suite (E2E_RUN_DIR)' }, () => {
  assert.ok(existsSync(RUN_DIR), `${RUN_DIR} is missing: did the e2e suite run?`);
  const workers = readdirSync(RUN_DIR).filter((d) => existsSync(join(RUN_DIR, d, 'wrangler.log')));
  assert.ok(workers.length >= 10, `only ${workers.length} Worker logs in ${RUN_DIR}`);
  let lines = 0;
  let requestLines = 0;
  const problems = [];
  for (const d of workers) {
    const log = readFileSync(join(RUN_DIR, d, 'wrangler.log'), 'utf8');
    const given = JSON.parse(readFileSync(join(RUN_DIR, d, 'secrets.json'), 'utf8'));
    lines += log.split('\n').length;
    requestLines += (log.match(/"durationMs":/g) ?? []).length;
    problems.push(...findSecrets(log, { values: given.values, keyHashes: new Set(given.keyHashes) }).map((p) => `${d}/wrangler.log ${p}`));
  }
  console.log(`${workers.length} Worker logs, ${lines} lines, ${requestLines} request lines checked`);
  assert.ok(requestLines > 1000, 'the Workers\' request lines are in the logs');
  assert.deepEqual(problems, []);
});

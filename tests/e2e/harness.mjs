// Starts the built Worker under real workerd (wrangler dev, local mode) on a
// free port with its own persistence directory, and stops or kills it; and
// the helpers the end-to-end tests share (one meaning each).
// The Worker must already be built (scripts/test.sh builds it once): the
// generated config has no [build] step, so wrangler starts in seconds.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../support/ports.mjs';

export const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');

export const SECRETS = {
  CALLBACK_USER: 'bw-status',
  CALLBACK_PASSWORD: 'status-pass:with-colon',
  CALLBACK_USER_2: 'bw-inbound',
  CALLBACK_PASSWORD_2: 'inbound-pass',
  API_TOKEN: 'test-api-token',
};

export function basic(user = SECRETS.CALLBACK_USER, pass = SECRETS.CALLBACK_PASSWORD) {
  return 'Basic ' + Buffer.from(`${user}:${pass}`).toString('base64');
}
export const API = { Authorization: `Bearer ${SECRETS.API_TOKEN}` };

/** wrangler.toml without its [build] section, pointing at the built output
 * (`build/`, or `build-test/` for the fault-injection variant). `name`
 * renames the Worker; `bindTo` names another running Worker whose Durable
 * Objects this one uses (each binding gets `script_name`, and this Worker
 * declares no classes of its own): two versions on one namespace, as during
 * a gradual rollout. */
function testConfig(dir, build, { name, bindTo } = {}) {
  const src = readFileSync(join(ROOT, 'wrangler.toml'), 'utf8');
  const out = [];
  let skipping = false;
  for (const line of src.split('\n')) {
    if (/^\s*\[/.test(line)) skipping = /^\s*\[build\]\s*$/.test(line) || (bindTo !== undefined && /^\s*\[\[migrations\]\]/.test(line));
    if (skipping) continue;
    let kept = line.replace(/^main\s*=.*$/, `main = ${JSON.stringify(join(ROOT, build, 'index.js'))}`);
    if (name) kept = kept.replace(/^name\s*=.*$/, `name = ${JSON.stringify(name)}`);
    if (bindTo) kept = kept.replace(/class_name = ("\w+") \}/, `class_name = $1, script_name = ${JSON.stringify(bindTo)} }`);
    out.push(kept);
  }
  const path = join(dir, 'wrangler.toml');
  writeFileSync(path, out.join('\n'));
  return path;
}

/**
 * Starts a Worker. Pass `persistDir` to restart on existing storage,
 * `build: 'build-test'` for the variant with test-only hooks, and `name`
 * and `bindTo` for a second Worker on a first one's objects (`testConfig`).
 * Returns { url, persistDir, stop(), kill() }.
 */
export async function startWorker(options = {}) {
  // A restart right after a SIGKILL can race the old runtime's teardown;
  // a runtime that fails to start three times in a row is a real failure.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startWorkerOnce(options);
    } catch (e) {
      if (attempt >= 3 || !/exited during start/.test(e.message)) throw e;
      console.log(`# wrangler did not start (attempt ${attempt}): ${e.message}; retrying`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** `E2E_BUILD` / `E2E_BUILD_TEST` run the suite against other builds (the
 * deliberately broken ones of a mutation check), like the bench's BENCH_BUILD. */
const BUILDS = { build: process.env.E2E_BUILD ?? 'build', 'build-test': process.env.E2E_BUILD_TEST ?? 'build-test' };

/** Where this run's Workers keep their logs: `E2E_RUN_DIR` (scripts/test.sh
 * sets it, and checks every log in it for secrets afterwards), else tmp. */
const RUN_DIR = process.env.E2E_RUN_DIR;

/** The secrets a Worker was given, for the log check: values that must
 * never appear in a log, and the SHA-256 of every client key (whose raw
 * value only the tests know). */
function recordSecrets(dir, vars) {
  const values = ['CALLBACK_PASSWORD', 'CALLBACK_PASSWORD_2', 'API_TOKEN', 'BW_CLIENT_SECRET', 'BW_PASSWORD', 'TARGET_SECRETS_KEY']
    .map((k) => vars[k]).filter((v) => typeof v === 'string' && v.length >= 4);
  const keyHashes = [];
  try {
    for (const t of JSON.parse(vars.FORWARD_TARGETS ?? '[]')) values.push(...[t.secret, ...(t.secrets ?? [])].filter(Boolean));
  } catch { /* a test of bad config */ }
  try {
    for (const k of JSON.parse(vars.CLIENT_KEYS ?? '[]')) if (k.key_sha256) keyHashes.push(k.key_sha256.toLowerCase());
  } catch { /* a test of bad config */ }
  writeFileSync(join(dir, 'secrets.json'), JSON.stringify({ values, keyHashes }));
}

/** Adds a secret the Worker made (a target's) to the log check's list. */
function noteSecret(dir, value) {
  const path = join(dir, 'secrets.json');
  const given = JSON.parse(readFileSync(path, 'utf8'));
  given.values.push(value);
  writeFileSync(path, JSON.stringify(given));
}

async function startWorkerOnce({ persistDir, vars = {}, build = 'build', name, bindTo } = {}) {
  build = BUILDS[build] ?? build;
  if (RUN_DIR) mkdirSync(RUN_DIR, { recursive: true });
  const dir = mkdtempSync(join(RUN_DIR ?? tmpdir(), 'bw-ledger-e2e-'));
  persistDir ??= join(dir, 'state');
  mkdirSync(persistDir, { recursive: true });
  const config = testConfig(dir, build, { name, bindTo });
  const [port, inspector] = [await freePort(), await freePort()];
  const allVars = { ...SECRETS, ...vars };
  recordSecrets(dir, allVars);
  const args = [
    'dev', '--config', config, '--local', '--ip', '127.0.0.1', '--port', String(port),
    '--inspector-port', String(inspector), '--persist-to', persistDir,
    // `log`: the Worker's own JSON lines too (`src/log.rs`), which the
    // log check reads (tests/log-secrets.test.mjs).
    '--show-interactive-dev-session=false', '--log-level', 'log', '--test-scheduled',
    ...Object.entries(allVars).flatMap(([k, v]) => ['--var', `${k}:${v}`]),
  ];
  const log = createWriteStream(join(dir, 'wrangler.log'));
  const child = spawn(join(ROOT, 'node_modules/.bin/wrangler'), args, {
    cwd: dir,
    detached: true, // own process group, so workerd dies with it
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_UPDATE_NOTIFIER: '1', CI: 'true' },
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  let exited = false;
  child.on('exit', () => { exited = true; });
  const url = `http://127.0.0.1:${port}`;
  const signalGroup = (sig) => {
    try { process.kill(-child.pid, sig); } catch { /* already gone */ }
  };
  const waitExit = () => new Promise((res) => (exited ? res() : child.once('exit', res)));
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (exited) throw new Error(`wrangler exited during start; see ${join(dir, 'wrangler.log')}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) {
      signalGroup('SIGKILL');
      throw new Error(`Worker did not start within 90 s; see ${join(dir, 'wrangler.log')}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  // The group is gone only when no process is left in it: workerd can
  // outlive wrangler's exit by a moment, holding its ports and storage.
  const groupGone = async () => {
    for (let i = 0; i < 200; i++) {
      try { process.kill(-child.pid, 0); } catch { return; }
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  return {
    url,
    persistDir,
    logFile: join(dir, 'wrangler.log'),
    /** A secret the Worker made and answered (a target's): the log check
     * looks for it in this Worker's log too. */
    noteSecret(value) { noteSecret(dir, value); },
    /** Graceful stop. */
    async stop() { signalGroup('SIGTERM'); await waitExit(); await groupGone(); },
    /** Crash: SIGKILL the whole process group (wrangler and workerd). */
    async kill() { signalGroup('SIGKILL'); await waitExit(); await groupGone(); },
  };
}

export async function postCallback(url, body, headers = { Authorization: basic() }) {
  const payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  return fetch(`${url}/callbacks/bandwidth`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: payload,
  });
}

export async function getJson(url, path, headers = API) {
  const r = await fetch(`${url}${path}`, { headers });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, headers: r.headers, json, text };
}

export function fixture(name) {
  return readFileSync(join(ROOT, 'core/tests/fixtures', name), 'utf8');
}

let counter = 0;
/** A unique message id, so that tests sharing a Worker never collide. */
export function uniqueId(prefix = 'm') {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

/** A realistic status callback event for `messageId`. */
export function statusEvent(messageId, { type = 'message-delivered', to = '+15552220001', time = '2026-11-20T15:04:07.450Z', errorCode, description = 'ok', extra = {} } = {}) {
  const ev = {
    type, time, description, to,
    message: {
      id: messageId, owner: '+15551110000', applicationId: '93de2206-9669-4e07-948d-329f4b722ee2',
      time: '2026-11-20T15:04:04.980Z', segmentCount: 1, direction: 'out', to: [to],
      from: '+15551110000', text: '', tag: 'e2e', priority: 'default',
    },
    ...extra,
  };
  if (errorCode !== undefined) ev.errorCode = errorCode;
  return ev;
}

/** Polls the message until no file is pending; returns its archivedMedia. */
export async function settled(url, id, { timeoutMs = 20_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await getJson(url, `/messages/${encodeURIComponent(id)}`);
    const media = r.json?.archivedMedia ?? [];
    if (r.status === 200 && media.length > 0 && media.every((m) => m.status !== 'pending')) return media;
    if (Date.now() > deadline) throw new Error(`media of ${id} still pending: ${JSON.stringify(media)}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** SHA-256 of a string or bytes, as hex (how `CLIENT_KEYS` holds a key). */
export function sha256(data) {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Calls `pred` (sync or async) until it answers something truthy, and
 * answers that; after `ms` it answers `pred`'s last answer, falsy, for the
 * caller to assert on.
 */
export async function waitFor(pred, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Runs one SQL statement on a ledger shard of a test build (`build-test`):
 * the shard that holds message `where`, or shard number `where`. Answers
 * the rows.
 */
export async function shardSql(url, where, sql, params = []) {
  const target = typeof where === 'number' ? { shard: where } : { messageId: where };
  return testSql(url, '/__test/shard-sql', { ...target, sql, params });
}

/** One SQL statement on client key `keyId`'s guard (a test build). */
export async function guardSql(url, keyId, sql, params = []) {
  return testSql(url, '/__test/guard-sql', { keyId, sql, params });
}

async function testSql(url, route, body) {
  const r = await fetch(`${url}${route}`, { method: 'POST', headers: { ...API, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const text = await r.text();
  assert.equal(r.status, 200, `${route} ${body.sql}: ${text}`);
  return JSON.parse(text).rows;
}

/** A `message-received` event: `from` texted our number `to`. */
export function inboundEvent({ id = uniqueId('in'), from = '+15554440001', to = '+15551110000', text = 'hi', media, time = new Date().toISOString(), applicationId = 'app', description = 'Incoming message received' } = {}) {
  const message = { id, owner: to, applicationId, time, segmentCount: 1, direction: 'in', to: [to], from, text };
  if (media !== undefined) message.media = media;
  return { type: 'message-received', time, description, to, message };
}

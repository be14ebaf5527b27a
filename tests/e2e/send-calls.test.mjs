// What a send costs the ledger: at most one shard call without an
// Idempotency-Key and at most two with one (counted by the shards
// themselves, in the test build), and an upgrade that keeps the
// Idempotency-Key records earlier builds saved in the shards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, uniqueId, API, sha256 } from './harness.mjs';
import { startFakeBandwidth } from '../support/fake-bandwidth.mjs';

const ACCOUNT = '9900000';
const KEY = 'send-calls-key';
let fake;
let w;

before(async () => {
  fake = await startFakeBandwidth();
  w = await startWorker({
    build: 'build-test',
    vars: {
      BW_ACCOUNT_ID: ACCOUNT, BW_APPLICATION_ID: 'app', BW_CLIENT_ID: 'id', BW_CLIENT_SECRET: 'secret',
      BANDWIDTH_API_BASE: `${fake.url}/api/v2`, BANDWIDTH_TOKEN_URL: `${fake.url}/api/v1/oauth2/token`,
      CLIENT_KEYS: JSON.stringify([{ id: 'calls', key_sha256: sha256(KEY), allowed_from: ['+15551110000'] }]),
    },
  });
});
after(async () => { await w?.stop(); await fake?.close(); });

/** Requests the ledger shards have answered so far (the probe excluded). */
async function shardRequests() {
  const r = await fetch(`${w.url}/__test/list-probe`, { method: 'POST', headers: API, body: JSON.stringify({ query: '' }) });
  assert.equal(r.status, 200);
  return (await r.json()).requests;
}

const send = (headers = {}, to = '+15552220001') => fetch(`${w.url}/api/v2/users/${ACCOUNT}/messages`, {
  method: 'POST',
  headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json', ...headers },
  body: JSON.stringify({ to: [to], from: '+15551110000', text: 'counted' }),
});

test('a send makes one shard call; with an Idempotency-Key at most two, and its replay none', async () => {
  assert.equal((await send()).status, 202); // warms the token cache and the guard
  let before = await shardRequests();
  assert.equal((await send()).status, 202);
  assert.equal(await shardRequests() - before, 1, 'without a key: the record of the send');

  const key = uniqueId('idem');
  before = await shardRequests();
  assert.equal((await send({ 'Idempotency-Key': key })).status, 202);
  const keyed = await shardRequests() - before;
  // The record, and (in the guard's first day) a look for an older record.
  assert.ok(keyed >= 1 && keyed <= 2, `with a key: ${keyed} shard calls`);

  const sent = fake.messageRequests.length;
  before = await shardRequests();
  const replay = await send({ 'Idempotency-Key': key });
  assert.equal(replay.status, 202);
  assert.equal(await shardRequests() - before, 0, 'a replay is answered by the key\'s guard alone');
  assert.equal(fake.messageRequests.length, sent, 'and never reaches Bandwidth');
});

test('an Idempotency-Key record saved in a shard by an earlier build is still replayed after the upgrade', async () => {
  const key = uniqueId('old-idem');
  const scope = JSON.stringify(['calls', key]);
  // As earlier builds kept it: on the shard the scope key maps to.
  const body = { to: ['+15552220001'], from: '+15551110000', text: 'counted', applicationId: 'app' };
  const bodyHash = sha256(canonical(body));
  const saved = { status: 202, body: '{"id":"from-an-earlier-build"}', contentType: 'application/json', retryAfter: null };
  const r = await fetch(`${w.url}/__test/shard-sql`, {
    method: 'POST', headers: API,
    body: JSON.stringify({ messageId: scope, sql: 'INSERT INTO idempotency (scope_key, body_hash, created_ms, response) VALUES (?, ?, ?, ?)',
      params: [scope, bodyHash, Date.now() - 60_000, JSON.stringify(saved)] }),
  });
  assert.equal(r.status, 200, await r.text());
  const sent = fake.messageRequests.length;
  const replay = await send({ 'Idempotency-Key': key });
  assert.equal(replay.status, 202);
  assert.deepEqual(await replay.json(), { id: 'from-an-earlier-build' });
  assert.equal(fake.messageRequests.length, sent, 'not sent twice across the upgrade');
  // The answer now lives with the key's guard: a second retry replays it too.
  const again = await send({ 'Idempotency-Key': key });
  assert.deepEqual(await again.json(), { id: 'from-an-earlier-build' });
  assert.equal(fake.messageRequests.length, sent);
});

/** The body as the Worker hashes it: keys sorted, no spaces (canonical_json). */
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  return JSON.stringify(v);
}

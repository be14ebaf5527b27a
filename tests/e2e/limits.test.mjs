// Abuse limits of client keys (issue #16), under workerd against the local
// fake Bandwidth: destinations, the per-minute rate, the daily quota (exact
// under concurrency), read limits, GET /keys, and the List count switch.
// Every refused send is checked to leave the fake and the ledger untouched.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startWorker, API, SECRETS, getJson, postCallback, uniqueId, sha256 } from './harness.mjs';
import { startFakeBandwidth } from '../support/fake-bandwidth.mjs';

const ACCOUNT = '9900000';
// Each key sends from its own number, so the ledger can be counted per key.
const KEYS = {
  quota: { secret: 'quota-key', from: '+15553330001', daily_quota: 10 },
  rate: { secret: 'rate-key', from: '+15553330002', rate_per_minute: 3 },
  plain: { secret: 'plain-key', from: '+15553330003' },
  uk: { secret: 'uk-key', from: '+15553330004', allowed_destinations: ['+4477'] },
  any: { secret: 'any-key', from: '+15553330005', allowed_destinations: ['*'] },
  reader: { secret: 'reader-key', from: '+15553330006', reads_per_minute: 3 },
  group: { secret: 'group-key', from: '+15553330007', daily_quota: 5 },
};
const CLIENT_KEYS = JSON.stringify(Object.entries(KEYS).map(([id, k]) => {
  const { secret, from, ...limits } = k;
  return { id, key_sha256: sha256(secret), allowed_from: [from], ...limits };
}));

let w;
let fake;
before(async () => {
  fake = await startFakeBandwidth();
  w = await startWorker({
    build: 'build-test',
    vars: {
      BW_ACCOUNT_ID: ACCOUNT, BW_APPLICATION_ID: 'app', CLIENT_KEYS, UPSTREAM_TIMEOUT_MS: '2000',
      BANDWIDTH_API_BASE: `${fake.url}/api/v2`, BANDWIDTH_TOKEN_URL: `${fake.url}/api/v1/oauth2/token`,
      BW_CLIENT_ID: 'client-id', BW_CLIENT_SECRET: 'client-secret',
    },
  });
});
after(async () => { await w?.stop(); await fake?.close(); });
beforeEach(() => { fake.script = []; });

let n = 0;
function send(keyId, body = {}) {
  const k = KEYS[keyId];
  n += 1;
  return fetch(`${w.url}/api/v2/users/${ACCOUNT}/messages`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${k.secret}` },
    body: JSON.stringify({ from: k.from, to: ['+15554440000'], text: `limits test ${n}`, ...body }),
  });
}
/** Messages the ledger holds from a key's number (API token, exact count). */
async function ledgerCount(keyId) {
  const r = await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages?sourceTn=${encodeURIComponent(KEYS[keyId].from)}`);
  assert.equal(r.status, 200);
  return r.json.totalCount;
}
const sentFrom = (keyId) => fake.messageRequests.filter((m) => JSON.parse(m.body).from === KEYS[keyId].from).length;
async function usage(keyId) {
  const r = await getJson(w.url, '/keys');
  assert.equal(r.status, 200);
  return r.json.keys.find((k) => k.id === keyId);
}

test('the daily quota holds exactly under 50 concurrent sends', async () => {
  const replies = await Promise.all(Array.from({ length: 50 }, () => send('quota')));
  const statuses = replies.map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 202).length, 10, statuses.join(','));
  assert.equal(statuses.filter((s) => s === 429).length, 40, statuses.join(','));
  const refused = replies.find((r) => r.status === 429);
  const retryAfter = Number(refused.headers.get('retry-after'));
  assert.ok(retryAfter >= 1 && retryAfter <= 86400, `Retry-After ${retryAfter} points at the next UTC midnight`);
  const body = await refused.json();
  assert.equal(body.type, 'daily-quota-exceeded');
  assert.match(body.description, /daily_quota of 10/);
  assert.equal(sentFrom('quota'), 10, 'Bandwidth saw exactly the admitted sends');
  assert.equal(await ledgerCount('quota'), 10, 'the ledger holds exactly the admitted sends');
  const u = await usage('quota');
  assert.equal(u.sendsToday, 10);
  assert.equal(u.messagesToday, 10);
  assert.equal(u.refusalsToday.quota, 40);
  assert.equal(u.lastRefusal, 'quota');
  assert.ok(Math.abs(Date.parse(u.lastRefusalAt) - Date.now()) < 600_000, u.lastRefusalAt);
});

test('the quota counts recipients; a send Bandwidth refuses gives its recipients back', async () => {
  const three = ['+15554440001', '+15554440002', '+15554440003'];
  assert.equal((await send('group', { to: three })).status, 202);
  // 3 + 3 > 5: refused whole, nothing partly sent.
  const over = await send('group', { to: ['+15554440004', '+15554440005', '+15554440006'] });
  assert.equal(over.status, 429);
  assert.equal(sentFrom('group'), 1);
  // Bandwidth refuses a send of 2 (400): the 2 do not count ...
  fake.script = [{ status: 400, body: { type: 'request-validation', description: 'no' } }];
  assert.equal((await send('group', { to: ['+15554440007', '+15554440008'] })).status, 400);
  // ... so 2 more still fit.
  assert.equal((await send('group', { to: ['+15554440009', '+15554440010'] })).status, 202);
  assert.equal((await send('group')).status, 429);
  const u = await usage('group');
  assert.equal(u.messagesToday, 5);
  assert.equal(u.sendsToday, 2);
  assert.equal(await ledgerCount('group'), 5, 'five recipient rows: the two accepted sends');
});

test('the per-minute rate: a burst of rate_per_minute, then 429 with Retry-After', async () => {
  for (let i = 0; i < 3; i++) assert.equal((await send('rate')).status, 202);
  const r = await send('rate');
  assert.equal(r.status, 429);
  const retryAfter = Number(r.headers.get('retry-after'));
  assert.ok(retryAfter >= 1 && retryAfter <= 20, `one send every 20 s: Retry-After ${retryAfter}`);
  const body = await r.json();
  assert.equal(body.type, 'rate-limited');
  assert.match(body.description, /rate_per_minute of 3/);
  assert.equal(sentFrom('rate'), 3);
  assert.equal(await ledgerCount('rate'), 3);
  assert.equal((await usage('rate')).refusalsToday.rate, 1);
});

test('destinations: by default only the calling codes of the key\'s own numbers', async () => {
  const before = fake.messageRequests.length;
  const r = await send('plain', { to: ['+15554440000', '+447700900123'] });
  assert.equal(r.status, 403);
  const body = await r.json();
  assert.equal(body.type, 'forbidden');
  assert.match(body.description, /\+447700900123/);
  assert.doesNotMatch(body.description, /\+15554440000/, 'only the refused number is named');
  assert.match(body.description, /allowed destinations: \+1\b/);
  assert.equal(fake.messageRequests.length, before, 'Bandwidth was not called');
  assert.equal(await ledgerCount('plain'), 0, 'nothing was recorded');
  assert.equal((await send('plain', { to: ['+15554440000'] })).status, 202);
  const u = await usage('plain');
  assert.equal(u.refusalsToday.destination, 1);
  assert.deepEqual(u.allowedDestinations, ['+1']);
});

test('destinations: configured prefixes replace the default, and "*" lifts the rule', async () => {
  const r = await send('uk', { to: ['+15554440000'] });
  assert.equal(r.status, 403);
  assert.match((await r.json()).description, /\+15554440000.*\+4477/);
  assert.equal((await send('uk', { to: ['+447700900123'] })).status, 202);
  assert.equal((await send('uk', { to: ['+447900900123'] })).status, 403, '+4479 is not +4477');
  assert.equal((await send('any', { to: ['+33612345678', '+8613800138000'] })).status, 202);
  assert.equal(sentFrom('uk'), 1);
  assert.equal(sentFrom('any'), 1);
  assert.deepEqual((await usage('any')).allowedDestinations, null);
});

test('a chunked send body over the limit gets 413, reaching neither Bandwidth nor the quota', async () => {
  const before = fake.messageRequests.length;
  const quotaBefore = (await usage('plain')).sendsToday;
  const text = 'x'.repeat(300 * 1024);
  const payload = Buffer.from(JSON.stringify({ from: KEYS.plain.from, to: ['+15554440000'], text }));
  const stream = new ReadableStream({
    start(c) { for (let i = 0; i < payload.length; i += 32768) c.enqueue(payload.subarray(i, i + 32768)); c.close(); },
  });
  const r = await fetch(`${w.url}/api/v2/users/${ACCOUNT}/messages`, {
    method: 'POST', headers: { Authorization: `Bearer ${KEYS.plain.secret}` }, body: stream, duplex: 'half',
  });
  assert.equal(r.status, 413);
  assert.equal((await r.json()).type, 'payload-too-large');
  assert.equal(fake.messageRequests.length, before);
  assert.equal((await usage('plain')).sendsToday, quotaBefore);
});

test('tag, priority and expiration reach Bandwidth unchanged', async () => {
  const expiration = new Date(Date.now() + 3_600_000).toISOString();
  const tag = 'order-77, "quoted" & ünïcode';
  const r = await send('any', { tag, priority: 'high', expiration });
  assert.equal(r.status, 202);
  const up = JSON.parse(fake.messageRequests.at(-1).body);
  assert.equal(up.tag, tag);
  assert.equal(up.priority, 'high');
  assert.equal(up.expiration, expiration);
});

test('reads count against reads_per_minute: lists, conversations and live subscribes', async () => {
  const headers = { Authorization: `Bearer ${KEYS.reader.secret}` };
  const list = () => fetch(`${w.url}/api/v2/users/${ACCOUNT}/messages?limit=1`, { headers });
  const conversation = () => fetch(`${w.url}/conversations?number=${encodeURIComponent(KEYS.reader.from)}&with=%2B15554440000`, { headers });
  const subscribe = () => new Promise((resolve, reject) => {
    const ws = new WebSocket(`${w.url.replace('http', 'ws')}/live`, ['bw-ledger', `token.${KEYS.reader.secret}`]);
    ws.on('open', () => { ws.close(); resolve(101); });
    ws.on('unexpected-response', (_req, res) => resolve({ status: res.statusCode, retryAfter: res.headers['retry-after'] }));
    ws.on('error', reject);
  });
  assert.equal((await list()).status, 200);
  assert.equal((await conversation()).status, 200);
  assert.equal(await subscribe(), 101);
  const over = await list();
  assert.equal(over.status, 429);
  assert.equal((await over.json()).type, 'read-rate-limited');
  const retryAfter = Number(over.headers.get('retry-after'));
  assert.ok(retryAfter >= 1 && retryAfter <= 20, `one read every 20 s: Retry-After ${retryAfter}`);
  assert.equal((await conversation()).status, 429);
  const live = await subscribe();
  assert.equal(live.status, 429);
  assert.ok(Number(live.retryAfter) >= 1);
  // The operator's token is never read-limited.
  for (let i = 0; i < 5; i++) assert.equal((await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages?limit=1`)).status, 200);
  assert.equal((await usage('reader')).refusalsToday.reads, 3);
});

test('GET /keys is for the API token only', async () => {
  assert.equal((await fetch(`${w.url}/keys`)).status, 401);
  assert.equal((await fetch(`${w.url}/keys`, { headers: { Authorization: `Bearer ${KEYS.any.secret}` } })).status, 401);
  const r = await getJson(w.url, '/keys');
  assert.deepEqual(r.json.keys.map((k) => k.id), Object.keys(KEYS));
  const quota = r.json.keys.find((k) => k.id === 'quota');
  assert.deepEqual(quota.limits, { daily_quota: 10 });
});

async function probe(query) {
  const r = await fetch(`${w.url}/__test/list-probe`, {
    method: 'POST', headers: { ...API, 'Content-Type': 'application/json' }, body: JSON.stringify({ query }),
  });
  assert.equal(r.status, 200);
  return r.json();
}

test('limitTotalCount=false runs no count query and leaves totalCount out; true caps it', async () => {
  const q = `sourceTn=${encodeURIComponent(KEYS.quota.from)}`;
  const before = (await probe(q)).countQueries;
  const skipped = await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages?${q}&limitTotalCount=false`);
  assert.equal(skipped.status, 200);
  assert.equal(skipped.json.messages.length, 10);
  assert.equal('totalCount' in skipped.json, false);
  assert.equal((await probe(q)).countQueries, before, 'no shard ran a count query');
  const exact = await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages?${q}`);
  assert.equal(exact.json.totalCount, 10);
  const capped = await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages?${q}&limitTotalCount=true`);
  assert.equal(capped.json.totalCount, 10);
  const shards = 8;
  assert.equal((await probe(q)).countQueries, before + 2 * shards, 'each counted list ran one count per shard');
  const bad = await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages?limitTotalCount=maybe`);
  assert.equal(bad.status, 400);
});

test('a status filter is found through the status index, and with a recipient its count reads no row', async () => {
  const failed = await probe('messageStatus=FAILED');
  for (const lines of [failed.pagePlan, failed.countPlan]) {
    assert.ok(lines.some((d) => /USING (COVERING )?INDEX list_by_status \(message_status=\?\)/.test(d)), JSON.stringify(lines));
  }
  // The index entries of a WITHOUT ROWID table hold its key, recipient
  // included: counting DELIVERED rows to a number reads the index only.
  const both = await probe('messageStatus=DELIVERED&destinationTn=%2B15554440000');
  assert.ok(both.countPlan.some((d) => d.includes('USING COVERING INDEX list_by_status (message_status=?)')), JSON.stringify(both.countPlan));
  // Each status answers what the rows hold: a failed and a delivered
  // message, and whatever the sends above left (ACCEPTED, SENDING).
  const time = '2026-11-20T10:00:00.000Z';
  const outcome = (type, id, extra) => ({
    type, time, description: type, to: '+15554440000', ...extra,
    message: { id, owner: '+15553330003', applicationId: 'app', time, segmentCount: 1, direction: 'out', to: ['+15554440000'], from: '+15553330003', text: '' },
  });
  const ids = { FAILED: uniqueId('st-f'), DELIVERED: uniqueId('st-d') };
  assert.equal((await postCallback(w.url, [outcome('message-failed', ids.FAILED, { errorCode: 4720 }), outcome('message-delivered', ids.DELIVERED)])).status, 200);
  for (const status of ['FAILED', 'DELIVERED', 'ACCEPTED']) {
    const r = await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages?messageStatus=${status}&limit=1000`);
    assert.equal(r.status, 200);
    assert.ok(r.json.messages.length > 0, status);
    assert.ok(r.json.messages.every((m) => m.messageStatus === status), status);
    assert.equal(r.json.totalCount, r.json.messages.length, status);
    if (ids[status]) assert.ok(r.json.messages.some((m) => m.messageId === ids[status]), status);
  }
});

test('a number prefix is a range on an index, not a scan', async () => {
  for (const column of ['sourceTn', 'destinationTn']) {
    const plan = await probe(`${column}=%2B1555`);
    const index = column === 'sourceTn' ? 'list_by_source' : 'list_by_destination';
    const col = column === 'sourceTn' ? 'source_tn' : 'destination_tn';
    for (const detail of [...plan.pagePlan, ...plan.countPlan]) assert.doesNotMatch(detail, /^SCAN message_rows$/, detail);
    const uses = (lines) => lines.some((d) => d.includes(`USING`) && d.includes(index) && d.includes(`${col}>? AND ${col}<?`));
    assert.ok(uses(plan.pagePlan), JSON.stringify(plan.pagePlan));
    assert.ok(uses(plan.countPlan), JSON.stringify(plan.countPlan));
  }
  // And the range finds exactly the prefix's rows.
  const r = await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages?sourceTn=%2B155533300&limitTotalCount=true`);
  assert.ok(r.json.messages.length > 0);
  assert.ok(r.json.messages.every((m) => m.sourceTn.startsWith('+155533300')));
});

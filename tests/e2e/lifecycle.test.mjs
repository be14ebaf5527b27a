// The data lifecycle (issue #17) under workerd: retention (now, and by the
// daily cron continuing from shard alarms), erasure by number with its
// tombstones, and NDJSON/CSV export of a time window.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseCsv } from 'csv-parse/sync';
import { startWorker, postCallback, getJson, uniqueId, API, sha256, shardSql } from './harness.mjs';
import { freePort } from '../support/ports.mjs';
import { startFakeBandwidth } from '../support/fake-bandwidth.mjs';

const ACCOUNT = '9900000';
const DAY = 86_400_000;
const KEY = 'lifecycle-client-key';
const CLIENT_KEYS = JSON.stringify([{
  id: 'web', key_sha256: sha256(KEY), allowed_from: ['+15556000000'],
}]);

let w;
let fake;
before(async () => {
  fake = await startFakeBandwidth();
  // A forwarding target nobody listens on: forwards stay queued (pending).
  const closed = await freePort();
  w = await startWorker({
    build: 'build-test',
    vars: {
      RETENTION_DAYS: '30', BW_ACCOUNT_ID: ACCOUNT, BW_APPLICATION_ID: 'app', CLIENT_KEYS,
      BANDWIDTH_API_BASE: `${fake.url}/api/v2`, BANDWIDTH_TOKEN_URL: `${fake.url}/api/v1/oauth2/token`,
      BW_CLIENT_ID: 'id', BW_CLIENT_SECRET: 'secret',
      FORWARD_TARGETS: JSON.stringify([{ id: 'nowhere', url: `http://127.0.0.1:${closed}/hook`, secret: 'whsec_' + Buffer.from('lifecycle').toString('base64') }]),
      FORWARD_RETRY_BASE_MS: '3600000', FORWARD_RETRY_MAX_MS: '3600000',
    },
  });
});
after(async () => { await w?.stop(); await fake?.close(); });

/** A status or inbound event of message `id`, whose Bandwidth time is `timeMs`. */
function ev(id, { type = 'message-delivered', timeMs, from = '+15556000000', to = ['+15557000000'], recipient = to[0], text = '', description = 'ok', direction = 'out' }) {
  const time = new Date(timeMs).toISOString();
  return {
    type, time: new Date(timeMs + 1500).toISOString(), description, to: recipient,
    message: { id, owner: from, applicationId: 'app', time, segmentCount: 1, direction, to, from, text },
  };
}
async function store(events) {
  const r = await postCallback(w.url, events);
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text);
}
/** What a shard holds of message `id`, table by table. */
async function held(id) {
  const out = {};
  for (const table of ['events', 'event_conflicts', 'message_rows', 'outbox']) {
    out[table] = (await shardSql(w.url, id, `SELECT count(*) AS n FROM ${table} WHERE message_id = ?`, [id]))[0].n;
  }
  return out;
}
const post = (path, body, headers = API) => fetch(`${w.url}${path}`, { method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

test('every lifecycle route refuses a missing token and a client key', async () => {
  for (const [method, path] of [['POST', '/retention/run'], ['POST', '/erasure'], ['GET', '/export']]) {
    for (const headers of [{}, { Authorization: `Bearer ${KEY}` }]) {
      const r = await fetch(`${w.url}${path}`, { method, headers, body: method === 'POST' ? '{"number":"+15550000000"}' : undefined });
      assert.equal(r.status, 401, `${method} ${path} with ${JSON.stringify(headers)}`);
      assert.equal((await r.json()).type, 'unauthorized');
    }
  }
});

test('export: exactly the window, as NDJSON message views and as CSV a real parser reads back', async () => {
  // A window of its own, days back, so other tests' messages stay outside.
  const t0 = Date.now() - 5 * DAY - (Date.now() % 3_600_000);
  const inside = [uniqueId('in'), uniqueId('in'), uniqueId('in')];
  const outside = [uniqueId('before'), uniqueId('at-end')];
  const tricky = 'Hello, "world"\nsecond line; ünïcode';
  await store([ev(inside[0], { timeMs: t0, text: tricky })]);
  await store([ev(inside[1], { timeMs: t0 + 1000, to: ['+15557000001', '+15557000002'], recipient: '+15557000001' })]);
  await store([ev(inside[1], { timeMs: t0 + 1000, to: ['+15557000001', '+15557000002'], recipient: '+15557000002', type: 'message-failed' })]);
  await store([ev(inside[2], { type: 'message-received', timeMs: t0 + 3_599_999, direction: 'in', from: '+15557000003', to: ['+15556000000'], text: 'in' })]);
  await store([ev(outside[0], { timeMs: t0 - 1 })]);
  await store([ev(outside[1], { timeMs: t0 + 3_600_000 })]);
  const from = new Date(t0).toISOString();
  const to = new Date(t0 + 3_600_000).toISOString();

  const nd = await fetch(`${w.url}/export?from=${from}&to=${to}`, { headers: API });
  assert.equal(nd.status, 200);
  assert.equal(nd.headers.get('content-type'), 'application/x-ndjson');
  const lines = (await nd.text()).split('\n');
  assert.equal(lines.pop(), '', 'every line ends with a newline');
  const views = lines.map((l) => JSON.parse(l));
  assert.deepEqual(views.map((v) => v.messageId).sort(), [...inside].sort());
  for (const v of views) {
    const one = await getJson(w.url, `/messages/${encodeURIComponent(v.messageId)}`);
    assert.deepEqual(v, one.json, 'a line is exactly GET /messages/{id}');
  }

  const csv = await fetch(`${w.url}/export?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}&format=csv`, { headers: API });
  assert.equal(csv.status, 200);
  assert.match(csv.headers.get('content-type'), /^text\/csv/);
  const rows = parseCsv(await csv.text(), { columns: true });
  assert.deepEqual(rows.map((r) => `${r.messageId} ${r.to}`).sort(), [
    `${inside[0]} +15557000000`, `${inside[1]} +15557000001`, `${inside[1]} +15557000002`, `${inside[2]} +15556000000`,
  ].sort(), 'one row per recipient, only the window');
  const first = rows.find((r) => r.messageId === inside[0]);
  assert.equal(first.text, tricky, 'commas, quotes and a newline survive');
  assert.equal(first.time, new Date(t0).toISOString());
  assert.equal(first.status, 'delivered');
  assert.equal(first.direction, 'out');
  assert.equal(first.from, '+15556000000');
  const failed = rows.find((r) => r.to === '+15557000002' && r.messageId === inside[1]);
  assert.equal(failed.status, 'failed');
  for (const column of ['messageId', 'time', 'direction', 'from', 'to', 'status', 'errorCode', 'text']) assert.ok(column in first, column);

  assert.equal((await fetch(`${w.url}/export?format=xml`, { headers: API })).status, 400);
  assert.equal((await fetch(`${w.url}/export?from=${to}&to=${from}`, { headers: API })).status, 400);
});

test('erasure deletes exactly the number\'s messages on every shard, and its retries are answered, not stored', async () => {
  const number = '+15559990001';
  const mine = [uniqueId('erase'), uniqueId('erase'), uniqueId('erase'), uniqueId('erase'), uniqueId('erase')];
  const other = uniqueId('keep');
  const now = Date.now() - DAY;
  const sent = ev(mine[0], { timeMs: now, to: [number], text: 'to the number' });
  await store([sent]);
  // A group message where the number is one recipient of two.
  await store([ev(mine[1], { timeMs: now, to: ['+15557000009', number], recipient: '+15557000009' })]);
  await store([ev(mine[2], { type: 'message-received', direction: 'in', timeMs: now, from: number, to: ['+15556000000'], text: 'from the number' })]);
  await store([ev(mine[3], { timeMs: now, to: [number], type: 'message-sending' })]);
  await store([ev(mine[4], { timeMs: now, to: [number] })]);
  await store([ev(other, { timeMs: now, to: ['+15557000010'], text: 'unrelated' })]);
  // Quarantined bodies that mention it: text, and bytes that are not UTF-8.
  const garbage = `not json, but it names ${number} ${uniqueId('q')}`;
  assert.equal((await postCallback(w.url, garbage)).status, 200);
  const binary = Buffer.concat([Buffer.from([0xff, 0xfe, 0x00]), Buffer.from(` ${number} ${uniqueId('b')}`)]);
  assert.equal((await postCallback(w.url, binary)).status, 200);
  const unrelatedGarbage = `not json either ${uniqueId('q')}`;
  assert.equal((await postCallback(w.url, unrelatedGarbage)).status, 200);
  // A send through the proxy: its saved answer (Idempotency-Key) names the number.
  const send = await fetch(`${w.url}/api/v2/users/${ACCOUNT}/messages`, {
    method: 'POST', headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json', 'Idempotency-Key': uniqueId('idem') },
    body: JSON.stringify({ from: '+15556000000', to: [number], text: 'via the proxy' }),
  });
  assert.equal(send.status, 202);
  const proxied = (await send.json()).id;
  // Saved answers live with the key's guard.
  const saved = async () => {
    const r = await fetch(`${w.url}/__test/guard-sql`, {
      method: 'POST', headers: { ...API, 'Content-Type': 'application/json' },
      body: JSON.stringify({ keyId: 'web', sql: 'SELECT count(*) AS n FROM idempotency WHERE instr(response, ?) > 0', params: [number.slice(1)] }),
    });
    assert.equal(r.status, 200);
    return (await r.json()).rows[0].n;
  };
  assert.equal(await saved(), 1);
  const quarantined = async () => (await getJson(w.url, '/quarantine?limit=1000')).json.items.map((i) => i.raw);
  const q0 = await quarantined();
  assert.ok(q0.some((raw) => raw === garbage));

  const r = await post('/erasure', { number });
  assert.equal(r.status, 200);
  const body = await r.json();
  assert.equal(body.erased, 6, JSON.stringify(body));
  assert.equal(body.quarantineItems, 2);

  for (const id of [...mine, proxied]) {
    assert.equal((await getJson(w.url, `/messages/${encodeURIComponent(id)}`)).status, 404, id);
    assert.deepEqual(await held(id), { events: 0, event_conflicts: 0, message_rows: 0, outbox: 0 }, id);
  }
  assert.equal((await getJson(w.url, `/messages/${encodeURIComponent(other)}`)).status, 200);
  for (const filter of ['sourceTn', 'destinationTn']) {
    const list = await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages?${filter}=${encodeURIComponent(number)}`);
    assert.equal(list.json.totalCount, 0, filter);
  }
  const q1 = await quarantined();
  assert.ok(!q1.some((raw) => raw === garbage));
  assert.ok(q1.some((raw) => raw === unrelatedGarbage), 'unrelated quarantine items stay');
  assert.equal(q1.length, q0.length - 2);
  assert.equal(await saved(), 0, 'the saved send answer naming the number is gone');

  // Bandwidth retries the callback: 200, and nothing comes back.
  const retry = await postCallback(w.url, [sent]);
  assert.equal(retry.status, 200);
  assert.deepEqual(await retry.json(), { stored: 0, duplicates: 0, conflicts: 0, quarantined: 0, erased: 1 });
  assert.equal((await getJson(w.url, `/messages/${encodeURIComponent(mine[0])}`)).status, 404);
  assert.deepEqual(await held(mine[0]), { events: 0, event_conflicts: 0, message_rows: 0, outbox: 0 });
  // Erasing again finds nothing.
  assert.deepEqual(await (await post('/erasure', { number })).json(), { erased: 0, quarantineItems: 0 });
  assert.equal((await post('/erasure', { number: '15559990001' })).status, 400);
});

test('retention deletes exactly the messages older than the window, with everything attached', async () => {
  const old = [uniqueId('old'), uniqueId('old'), uniqueId('old')];
  const young = [uniqueId('young'), uniqueId('young')];
  const now = Date.now();
  for (const id of old) {
    const t = now - 40 * DAY;
    await store([ev(id, { timeMs: t, type: 'message-sending' })]);
    await store([ev(id, { timeMs: t, type: 'message-delivered' })]);
    // The same event again with other content: an identity conflict.
    await store([ev(id, { timeMs: t, type: 'message-delivered', description: 'rewritten' })]);
  }
  for (const id of young) await store([ev(id, { timeMs: now - 29 * DAY, type: 'message-delivered' })]);
  // One just inside the window's edge (30 days less a minute) stays too.
  const edge = uniqueId('edge');
  await store([ev(edge, { timeMs: now - 30 * DAY + 60_000 })]);
  for (const id of old) {
    const h = await held(id);
    assert.ok(h.events >= 2 && h.event_conflicts === 1 && h.message_rows === 1 && h.outbox >= 1, JSON.stringify(h));
  }
  // An old saved send answer goes too.
  await shardSql(w.url, old[0], 'INSERT INTO idempotency (scope_key, body_hash, created_ms, response) VALUES (?, ?, ?, NULL)', [`["web","${old[0]}"]`, 'h', now - 31 * DAY]);
  const youngBefore = await Promise.all(young.map((id) => getJson(w.url, `/messages/${encodeURIComponent(id)}`)));

  const r = await post('/retention/run', {});
  assert.equal(r.status, 200);
  const body = await r.json();
  assert.equal(body.retentionDays, 30);
  // The other tests' messages are all younger than 30 days.
  assert.equal(body.purged, old.length, JSON.stringify(body));
  for (const id of old) {
    assert.equal((await getJson(w.url, `/messages/${encodeURIComponent(id)}`)).status, 404);
    assert.deepEqual(await held(id), { events: 0, event_conflicts: 0, message_rows: 0, outbox: 0 }, id);
  }
  assert.equal((await shardSql(w.url, old[0], 'SELECT count(*) AS n FROM idempotency WHERE scope_key = ?', [`["web","${old[0]}"]`]))[0].n, 0);
  for (const [i, id] of young.entries()) {
    const now2 = await getJson(w.url, `/messages/${encodeURIComponent(id)}`);
    assert.deepEqual(now2.json, youngBefore[i].json, 'younger messages are untouched');
  }
  assert.equal((await getJson(w.url, `/messages/${encodeURIComponent(edge)}`)).status, 200);
  assert.equal((await (await post('/retention/run', {})).json()).purged, 0, 'a second run finds nothing');
});

test('the daily cron sweeps a large shard batch by batch from its alarm (one shard, 250 old messages)', async () => {
  const one = await startWorker({ vars: { RETENTION_DAYS: '7', LEDGER_SHARDS: '1', BW_ACCOUNT_ID: ACCOUNT } });
  try {
    const t = Date.now() - 10 * DAY;
    const ids = Array.from({ length: 250 }, () => uniqueId('cron'));
    for (let i = 0; i < ids.length; i += 25) {
      const r = await postCallback(one.url, ids.slice(i, i + 25).map((id) => ev(id, { timeMs: t })));
      assert.equal(r.status, 200);
    }
    const keep = uniqueId('cron-keep');
    assert.equal((await postCallback(one.url, [ev(keep, { timeMs: Date.now() - DAY })])).status, 200);
    const count = async () => (await getJson(one.url, `/api/v2/users/${ACCOUNT}/messages?limit=1&toDateTime=${new Date(t + 1).toISOString()}`)).json.totalCount;
    assert.equal(await count(), 250);
    const cron = await fetch(`${one.url}/__scheduled?cron=${encodeURIComponent('17 3 * * *')}`);
    assert.equal(cron.status, 200);
    // The first batch (100) runs in the cron's call; the alarm does the rest.
    const deadline = Date.now() + 30_000;
    let left = await count();
    while (left > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      left = await count();
    }
    assert.equal(left, 0, 'the alarm finished the sweep');
    assert.equal((await getJson(one.url, `/messages/${encodeURIComponent(keep)}`)).status, 200);
  } finally {
    await one.stop();
  }
});

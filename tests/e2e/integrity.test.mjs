// Integrity: a shard write is all or nothing, derived state heals itself,
// no input makes a stored message unreadable, and bodies stay bounded.
// Runs the `build-test/` variant: the same Worker plus one test-only route
// (`POST /__test/shard-sql`) that runs SQL on a message's shard, used here to
// install a failing trigger and to delete derived rows by hand.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import WebSocket from 'ws';
import { startReceiver } from '../support/receiver.mjs';
import { startWorker, postCallback, getJson, uniqueId, statusEvent, API, SECRETS, sha256, waitFor, shardSql } from './harness.mjs';

const ACCOUNT = '9900000';
const KEY = 'integrity-client-key';
const CLIENT_KEYS = JSON.stringify([
  { id: 'web', key_sha256: sha256(KEY), allowed_from: ['+15551110000'] },
]);
const SECRET = 'whsec_' + Buffer.from('integrity-target-secret').toString('base64');

let w;
let receiver;
/** Every forward the receiver saw. */
let received;

before(async () => {
  receiver = await startReceiver();
  received = receiver.seen;
  const target = { id: 'main', url: `${receiver.url}/main`, secret: SECRET };
  w = await startWorker({
    build: 'build-test',
    vars: {
      FORWARD_TARGETS: JSON.stringify([target]),
      FORWARD_RETRY_BASE_MS: '100', FORWARD_RETRY_MAX_MS: '400', FORWARD_GIVE_UP_MS: '60000',
      CLIENT_KEYS, BW_ACCOUNT_ID: ACCOUNT,
    },
  });
});
after(async () => { await w?.stop(); receiver?.close(); });


const listed = async (id) => {
  const r = await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages?messageId=${encodeURIComponent(id)}`);
  assert.equal(r.status, 200, r.text);
  return r.json.messages;
};


function subscribe() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${w.url.replace('http', 'ws')}/live`, ['bw-ledger', `token.${SECRETS.API_TOKEN}`]);
    const messages = [];
    ws.on('message', (m) => messages.push(JSON.parse(m.toString())));
    ws.on('open', () => resolve({ ws, messages }));
    ws.on('error', reject);
  });
}

/** A group message's events: sending, then delivered to two recipients. */
function groupEvents(id) {
  const base = statusEvent(id);
  const message = { ...base.message, to: ['+15552220001', '+15552220002'] };
  return [
    { ...statusEvent(id, { type: 'message-sending', to: '+15552220001' }), message },
    { ...statusEvent(id, { type: 'message-delivered', to: '+15552220001' }), message },
    { ...statusEvent(id, { type: 'message-delivered', to: '+15552220002' }), message },
  ];
}

test('a statement failing after the events were written leaves nothing; the retry stores all of it', async () => {
  const id = uniqueId('atomic');
  // Fails the first outbox insert for this message: after the events are
  // inserted, before the list rows are written.
  await shardSql(w.url, id, `CREATE TRIGGER fail_${id.replace(/\W/g, '_')} BEFORE INSERT ON outbox
    WHEN NEW.message_id = '${id}' BEGIN SELECT RAISE(ABORT, 'injected fault'); END`);
  const events = groupEvents(id);
  const refused = await postCallback(w.url, events);
  const refusedText = await refused.text();
  assert.equal(refused.status, 503, refusedText);
  // Bandwidth sees a retryable 503 with Retry-After, as a JSON error.
  assert.equal(JSON.parse(refusedText).type, 'storage-unavailable');
  assert.equal(refused.headers.get('retry-after'), '1');

  // Nothing of that write remains: no event, no list row, no outbox row.
  assert.deepEqual(await shardSql(w.url, id, 'SELECT COUNT(*) AS n FROM events WHERE message_id = ?', [id]), [{ n: 0 }]);
  assert.deepEqual(await shardSql(w.url, id, 'SELECT COUNT(*) AS n FROM message_rows WHERE message_id = ?', [id]), [{ n: 0 }]);
  assert.deepEqual(await shardSql(w.url, id, 'SELECT COUNT(*) AS n FROM outbox WHERE message_id = ?', [id]), [{ n: 0 }]);
  assert.equal((await getJson(w.url, `/messages/${id}`)).status, 404);

  await shardSql(w.url, id, `DROP TRIGGER fail_${id.replace(/\W/g, '_')}`);
  const live = await subscribe();
  try {
    // Bandwidth's retry: every event is new (a partial commit would have
    // made them duplicates, and their list rows and forwards lost).
    const retry = await postCallback(w.url, events);
    assert.equal(retry.status, 200);
    assert.deepEqual(await retry.json(), { stored: 3, duplicates: 0, conflicts: 0, quarantined: 0 });
    const m = await getJson(w.url, `/messages/${id}`);
    assert.equal(m.status, 200);
    assert.deepEqual(m.json.recipients.map((r) => r.status).sort(), ['delivered', 'delivered']);
    assert.deepEqual((await listed(id)).map((r) => r.destinationTn).sort(), ['+15552220001', '+15552220002']);
    assert.ok(await waitFor(() => received.filter((r) => r.body.messageId === id).length === 2),
      'both recipients forwarded');
    assert.ok(await waitFor(() => live.messages.filter((d) => d.messageId === id).length === 2),
      `live changes for both recipients: ${JSON.stringify(live.messages)}`);
  } finally {
    live.ws.close();
  }
});

test('a duplicate of a message whose list rows were lost rebuilds them, with its forwards, once', async () => {
  const id = uniqueId('heal');
  const events = groupEvents(id);
  assert.equal((await postCallback(w.url, events)).status, 200);
  assert.ok(await waitFor(() => received.filter((r) => r.body.messageId === id).length === 2));
  const before = await listed(id);
  assert.equal(before.length, 2);

  await shardSql(w.url, id, 'DELETE FROM message_rows WHERE message_id = ?', [id]);
  assert.deepEqual(await listed(id), [], 'the damage is visible');

  const dup = await postCallback(w.url, [events[1]]);
  assert.deepEqual(await dup.json(), { stored: 0, duplicates: 1, conflicts: 0, quarantined: 0 });
  assert.deepEqual(await listed(id), before, 'rebuilt exactly as it was');
  // The forwards existed already (same webhook ids): none is sent again.
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(received.filter((r) => r.body.messageId === id).length, 2);

  // A healthy duplicate writes nothing: the rows are compared, not
  // rewritten. Triggers note any write to the list rows meanwhile.
  await shardSql(w.url, id, 'CREATE TABLE row_writes (op TEXT)');
  for (const op of ['INSERT', 'UPDATE', 'DELETE']) {
    await shardSql(w.url, id, `CREATE TRIGGER watch_${op.toLowerCase()} AFTER ${op} ON message_rows BEGIN INSERT INTO row_writes VALUES ('${op}'); END`);
  }
  try {
    assert.equal((await postCallback(w.url, [events[2]])).status, 200);
    assert.deepEqual(await shardSql(w.url, id, 'SELECT op FROM row_writes'), []);
    // The watch works: a real change is seen.
    await shardSql(w.url, id, "UPDATE message_rows SET flags = flags WHERE message_id = ?", [id]);
    assert.deepEqual(await shardSql(w.url, id, 'SELECT DISTINCT op FROM row_writes'), [{ op: 'UPDATE' }]);
  } finally {
    for (const op of ['insert', 'update', 'delete']) await shardSql(w.url, id, `DROP TRIGGER watch_${op}`);
    await shardSql(w.url, id, 'DROP TABLE row_writes');
  }
});

test('a new message\'s rows, projected from the events its own callback just stored, equal the rows rebuilt from storage', async () => {
  // The first callback's projection takes its events from memory (the
  // shard does not read back what it just wrote); healing rebuilds from
  // SQLite. Both must give the same rows, column for column: here a group
  // message whose first callback carries an event twice, a contradiction
  // (failed, then delivered, for one recipient) and events out of order.
  const id = uniqueId('own-events');
  const message = { ...statusEvent(id).message, to: ['+15552220001', '+15552220002'], media: ['https://example.com/a.png'] };
  const ev = (type, to, time, extra = {}) => ({ ...statusEvent(id, { type, to, time, ...extra }), message });
  const first = [
    ev('message-delivered', '+15552220001', '2026-11-20T15:04:09.000Z'),
    ev('message-sending', '+15552220001', '2026-11-20T15:04:05.000Z'),
    ev('message-failed', '+15552220002', '2026-11-20T15:04:06.000Z', { errorCode: 4720, description: 'invalid' }),
    ev('message-delivered', '+15552220002', '2026-11-20T15:04:08.000Z'),
  ];
  const r = await postCallback(w.url, [...first, first[1]]);
  assert.deepEqual(await r.json(), { stored: 4, duplicates: 1, conflicts: 0, quarantined: 0 });
  const rows = () => shardSql(w.url, id, 'SELECT * FROM message_rows WHERE message_id = ? ORDER BY destination_tn', [id]);
  const fromMemory = await rows();
  assert.equal(fromMemory.length, 2);
  assert.deepEqual(fromMemory.map((x) => x.destination_tn), ['+15552220001', '+15552220002']);

  await shardSql(w.url, id, 'DELETE FROM message_rows WHERE message_id = ?', [id]);
  assert.deepEqual(await (await postCallback(w.url, [first[0]])).json(), { stored: 0, duplicates: 1, conflicts: 0, quarantined: 0 });
  assert.deepEqual(await rows(), fromMemory, 'rebuilt from storage, column for column');

  // A later callback adds to the stored events; its rows equal a rebuild too.
  const later = ev('message-sent', '+15552220001', '2026-11-20T15:04:07.000Z');
  assert.equal((await postCallback(w.url, [later])).status, 200);
  const afterLater = await rows();
  await shardSql(w.url, id, 'DELETE FROM message_rows WHERE message_id = ?', [id]);
  assert.equal((await postCallback(w.url, [later])).status, 200);
  assert.deepEqual(await rows(), afterLater);
});

test('a lost forward is rebuilt by the next duplicate when the list row is stale', async () => {
  const id = uniqueId('stale');
  const [sending, delivered1] = groupEvents(id);
  assert.equal((await postCallback(w.url, [sending])).status, 200);
  // As a partial commit of the old code could leave it: the delivered
  // event stored, its list rows and forward never written.
  assert.equal((await postCallback(w.url, [delivered1])).status, 200);
  assert.ok(await waitFor(() => received.some((r) => r.body.messageId === id && r.body.status === 'delivered')));
  const forwarded = received.filter((r) => r.body.messageId === id).length;
  await shardSql(w.url, id, "UPDATE message_rows SET state = 'sending', message_status = 'SENDING' WHERE message_id = ?", [id]);
  await shardSql(w.url, id, "DELETE FROM outbox WHERE message_id = ? AND payload LIKE '%\"status\":\"delivered\"%'", [id]);

  assert.equal((await postCallback(w.url, [delivered1])).status, 200);
  assert.equal((await listed(id)).find((r) => r.destinationTn === '+15552220001').messageStatus, 'DELIVERED');
  assert.ok(await waitFor(() => received.filter((r) => r.body.messageId === id).length === forwarded + 1),
    'the missing forward is queued again, with its original webhook id');
  const ids = received.filter((r) => r.body.messageId === id && r.body.status === 'delivered').map((r) => r.id);
  assert.equal(new Set(ids).size, 1, 'the same webhook-id both times');
});

// Values a JavaScript number cannot hold exactly.
const HUGE = ['9007199254740993', '1e300', '18446744073709551616'];

test('a modelled number beyond 2^53 quarantines only its element; every read answers 200', async () => {
  for (const [field, put] of [
    ['errorCode', (ev, v) => `${ev.slice(0, -1)},"errorCode":${v}}`],
    ['message.segmentCount', (ev, v) => ev.replace('"segmentCount":1', `"segmentCount":${v}`)],
  ]) {
    for (const value of HUGE) {
      const okId = uniqueId('num-ok');
      const badId = uniqueId('num-bad');
      const bad = put(JSON.stringify(statusEvent(badId, { type: 'message-failed', description: 'x' })), value);
      assert.ok(bad.includes(value), bad);
      const body = `[${JSON.stringify(statusEvent(okId))},${bad}]`;
      const r = await postCallback(w.url, body);
      assert.equal(r.status, 200, `${field}=${value}`);
      assert.deepEqual(await r.json(), { stored: 1, duplicates: 0, conflicts: 0, quarantined: 1 }, `${field}=${value}`);
      // Bandwidth's retry changes nothing.
      assert.deepEqual(await (await postCallback(w.url, body)).json(), { stored: 0, duplicates: 1, conflicts: 0, quarantined: 1 });
      assert.equal((await getJson(w.url, `/messages/${okId}`)).status, 200);
      assert.equal((await listed(okId)).length, 1);
      assert.equal((await getJson(w.url, `/messages/${badId}`)).status, 404, 'quarantined, not half-stored');
      const q = await getJson(w.url, '/quarantine?limit=1000');
      const item = q.json.items.find((i) => i.raw === bad);
      assert.ok(item, `${field}=${value} is in the quarantine byte for byte`);
      assert.match(item.reason, new RegExp(field.replace('.', '\\.')));
    }
  }
});

test('an unmodelled number of any size is stored exactly and the message reads back', async () => {
  for (const value of HUGE) {
    const id = uniqueId('num-free');
    const ev = JSON.stringify(statusEvent(id)).replace('"tag":"e2e"', `"tag":"e2e","price":${value}`);
    const body = `[${ev.slice(0, -1)},"carrierScore":${value}}]`;
    const r = await postCallback(w.url, body);
    assert.deepEqual(await r.json(), { stored: 1, duplicates: 0, conflicts: 0, quarantined: 0 });
    const m = await getJson(w.url, `/messages/${id}`);
    assert.equal(m.status, 200, m.text);
    assert.equal((await listed(id)).length, 1);
    const raw = await shardSql(w.url, id, 'SELECT raw FROM events WHERE message_id = ?', [id]);
    assert.equal(raw[0].raw, body.slice(1, -1), 'kept byte for byte');
  }
});

/** POSTs `total` bytes with no Content-Length (chunked); resolves with the status. */
function postChunked(path, headers, total) {
  return new Promise((resolve, reject) => {
    const url = new URL(path, w.url);
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', (e) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? resolve('reset') : reject(e)));
    const chunk = Buffer.alloc(64 * 1024, 'a');
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        sent += chunk.length;
        if (!req.write(chunk)) return req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

test('chunked bodies over the limit get 413 on the callback and send routes; the Worker keeps answering', async () => {
  const size = 2.5 * 1024 * 1024;
  const callback = await postChunked('/callbacks/bandwidth',
    { Authorization: 'Basic ' + Buffer.from(`${SECRETS.CALLBACK_USER}:${SECRETS.CALLBACK_PASSWORD}`).toString('base64'), 'Content-Type': 'application/json' },
    size);
  assert.equal(callback, 413);
  const send = await postChunked(`/api/v2/users/${ACCOUNT}/messages`,
    { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' }, size);
  assert.equal(send, 413);
  assert.equal((await fetch(`${w.url}/healthz`)).status, 200);
  const id = uniqueId('after-413');
  assert.equal((await postCallback(w.url, [statusEvent(id)])).status, 200);
  assert.equal((await getJson(w.url, `/messages/${id}`)).status, 200);
});

test('outbox replay takes 500 ids in one request', async () => {
  const id = uniqueId('replay500');
  assert.equal((await postCallback(w.url, groupEvents(id))).status, 200);
  assert.ok(await waitFor(() => received.filter((r) => r.body.messageId === id).length === 2));
  const real = received.filter((r) => r.body.messageId === id).map((r) => r.id);
  const ids = [...real, ...Array.from({ length: 498 }, (_, i) => `msg_unknown_${i}`)];
  const r = await fetch(`${w.url}/outbox/replay`, {
    method: 'POST', headers: { ...API, 'Content-Type': 'application/json' },
    body: JSON.stringify({ target: 'main', ids }),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  assert.deepEqual(JSON.parse(text), { replayed: 2 });
  assert.ok(await waitFor(() => received.filter((x) => x.body.messageId === id).length === 4), 'both sent again');
});

test('a message\'s events are found through the event key index, with no per-message index to write', async () => {
  const id = uniqueId('plan');
  await postCallback(w.url, [statusEvent(id, { type: 'message-sending', time: '2026-11-20T15:04:05.000Z' })]);
  await postCallback(w.url, [statusEvent(id, { type: 'message-delivered', time: '2026-11-20T15:04:07.000Z' })]);
  const indexes = (await shardSql(w.url, id, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")).map((r) => r.name);
  assert.deepEqual(indexes, ['sqlite_autoindex_events_1'], 'only the unique index on event_key');
  // The query of reads::events_of (EVENTS_IN_RANGES): a seek per range.
  const plan = (await shardSql(w.url, id, `EXPLAIN QUERY PLAN SELECT e.seq FROM json_each(?) AS r CROSS JOIN events AS e
     WHERE e.event_key >= json_extract(r.value, '$[0]') AND e.event_key < json_extract(r.value, '$[1]') ORDER BY e.seq`,
  [JSON.stringify([[`["${id}",`, `["${id}"-`]])])).map((r) => r.detail).join(' | ');
  assert.match(plan, /^SCAN r VIRTUAL TABLE .*\| SEARCH e USING (COVERING )?INDEX sqlite_autoindex_events_1 \(event_key>\? AND event_key<\?\)/, plan);
  // And the message reads back whole.
  const m = await getJson(w.url, `/messages/${id}`);
  assert.deepEqual(m.json.timeline.map((t) => t.type), ['message-sending', 'message-delivered']);
});

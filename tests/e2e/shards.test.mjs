// Changing LEDGER_SHARDS on a live deployment: a newer version's count is
// recorded as a new layout that starts a lead later (TEST_SHARD_LEAD_MS in
// the test build), messages made from then on are placed by it, and every
// earlier message stays on the shard that holds it. So every read answers
// the same before, during and after the change, nothing is stored twice,
// and forwards and tombstones keep working on old shards and new.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startReceiver, whsec } from '../support/receiver.mjs';
import { startWorker, postCallback, getJson, statusEvent, waitFor, API } from './harness.mjs';

const ACCOUNT = '9900000';
const LEAD_MS = 10_000;
/** The first test reads 500 messages while the new layout waits: on a
 * loaded CI machine that took over 10 s, so its lead is longer. */
const LONG_LEAD_MS = 30_000;
const ERASED_NUMBER = '+15557770001';
const SEALING_KEY = Buffer.alloc(32, 9).toString('base64');

let made = 0;
/** An id as Bandwidth makes them: the millisecond it was made, then letters. */
const bandwidthId = () => `${Date.now()}${process.pid.toString(36)}x${(made++).toString(36).padStart(4, '0')}`;

const vars = (count, extra = {}) => ({
  LEDGER_SHARDS: String(count), BW_ACCOUNT_ID: ACCOUNT, TEST_SHARD_LEAD_MS: String(LEAD_MS),
  TARGET_SECRETS_KEY: SEALING_KEY, FORWARD_RETRY_BASE_MS: '100', FORWARD_RETRY_MAX_MS: '400', ...extra,
});
const start = (count, options = {}) => startWorker({ build: 'build-test', ...options, vars: vars(count, options.vars) });

async function listAll(url, query = '') {
  const ids = [];
  let total;
  let token = null;
  do {
    const r = await getJson(url, `/api/v2/users/${ACCOUNT}/messages?limit=50${query}${token ? `&pageToken=${token}` : ''}`);
    assert.equal(r.status, 200, r.text);
    total ??= r.json.totalCount;
    ids.push(...r.json.messages.map((m) => `${m.messageId}/${m.destinationTn}`));
    token = r.json.pageInfo.nextPageToken;
  } while (token);
  return { ids, total };
}

async function readAll(url, ids) {
  const bodies = {};
  for (const id of ids) {
    const r = await getJson(url, `/messages/${encodeURIComponent(id)}`);
    assert.equal(r.status, 200, `${id}: ${r.text}`);
    bodies[id] = r.text;
  }
  return bodies;
}

/** Posts `sending` for each id (concurrently, a few at a time). */
async function send(url, ids, type = 'message-sending') {
  for (let i = 0; i < ids.length; i += 10) {
    const answers = await Promise.all(ids.slice(i, i + 10).map((id) =>
      postCallback(url, [statusEvent(id, { type, description: type, time: new Date().toISOString() })])));
    for (const r of answers) assert.equal(r.status, 200, r.text);
  }
}

const shards = async (url) => {
  const r = await getJson(url, '/shards');
  assert.equal(r.status, 200, r.text);
  return r.json;
};
const metrics = async (url) => (await fetch(`${url}/metrics`, { headers: API })).text();

/** Waits until the layout of `count` shards, recorded last, has started. */
async function started(url, count) {
  const next = (await shards(url)).next;
  if (next) await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(next.since) - Date.now()) + 200));
  const now = await shards(url);
  assert.equal(now.next, null);
  assert.equal(now.inForce.count, count);
}

/** What every read of the deployment answers: each message, the List's
 * pages (unfiltered and by status) and their totalCount. */
async function everything(url, ids) {
  return {
    bodies: await readAll(url, ids),
    list: await listAll(url),
    sending: await listAll(url, '&messageStatus=SENDING'),
    forwards: await forwards(url),
  };
}

const call = (w, method, path, body) => fetch(`${w.url}${path}`, {
  method, headers: { ...API, 'Content-Type': 'application/json' }, body: body && JSON.stringify(body),
});

/** An API-made target: `crm` delivers; `held` is disabled, so its forwards
 * wait (paused); `gone` is disabled, and deleted later (dead letters). */
async function makeTargets(w, receiver) {
  for (const id of ['crm', 'held', 'gone']) {
    const res = await call(w, 'POST', '/targets', { id, url: `${receiver.url}/${id}`, events: ['message.status'] });
    const json = await res.json();
    assert.equal(res.status, 201, JSON.stringify(json));
    w.noteSecret(json.secret);
    if (id !== 'crm') assert.equal((await call(w, 'POST', `/targets/${id}/disable`)).status, 200);
  }
}

/** The held and dead forwards, as GET /outbox and GET /outbox/dead show them. */
async function forwards(url) {
  const stats = (await getJson(url, '/outbox')).json.targets
    .filter((t) => t.target !== 'crm')
    .map(({ target, pending, paused, dead, delivered }) => ({ target, pending, paused, dead, delivered }));
  const dead = (await getJson(url, '/outbox/dead?target=gone&limit=1000')).json.items
    .map((d) => `${d.messageId} ${d.webhookId ?? ''} ${d.lastError}`).sort();
  return { stats, dead };
}

/** Each message's `delivered` forward reached the target exactly once. */
async function forwardedOnce(receiver, ids) {
  const delivered = (id) => receiver.seen.filter((s) => s.messageId === id && s.body?.status === 'delivered' && !s.failed);
  assert.ok(await waitFor(() => ids.every((id) => delivered(id).length >= 1), 30_000),
    `forwarded: ${ids.filter((id) => delivered(id).length === 0).length} of ${ids.length} missing`);
  await new Promise((r) => setTimeout(r, 500));
  for (const id of ids) assert.equal(delivered(id).length, 1, `${id} forwarded once`);
}

test('raising 4 → 7: every read and forward answers the same before, during and after; later messages spread over 7', async () => {
  const receiver = await startReceiver();
  const first = await start(4);
  const old = Array.from({ length: 500 }, bandwidthId);
  const erased = bandwidthId();
  const erasedEvent = [statusEvent(erased, { type: 'message-sending', description: 'sending', to: ERASED_NUMBER })];
  let persistDir;
  let before;
  try {
    await makeTargets(first, receiver);
    await send(first.url, old);
    assert.equal((await call(first, 'DELETE', '/targets/gone')).status, 204);
    assert.equal((await postCallback(first.url, erasedEvent)).status, 200);
    const gone = await fetch(`${first.url}/erasure`, {
      method: 'POST', headers: { ...API, 'Content-Type': 'application/json' }, body: JSON.stringify({ number: ERASED_NUMBER }),
    });
    assert.equal((await gone.json()).erased, 1);
    before = await everything(first.url, old);
    assert.equal(before.list.total, old.length);
    assert.deepEqual(before.forwards.stats.find((t) => t.target === 'held'), { target: 'held', pending: 0, paused: 500, dead: 0, delivered: 0 });
    assert.equal(before.forwards.dead.length, 500, 'the deleted target\'s forwards are dead letters');
    const spread = (await shards(first.url)).shards.map((s) => s.listRows);
    assert.deepEqual(spread.length, 4);
    assert.ok(spread.every((n) => n > 80), `500 messages over 4 shards: ${spread}`);
    persistDir = first.persistDir;
  } finally {
    await first.stop();
  }

  const second = await start(7, { persistDir, vars: { TEST_SHARD_LEAD_MS: String(LONG_LEAD_MS) } });
  try {
    // Recorded, not yet started: placement is unchanged.
    const waiting = await shards(second.url);
    assert.equal(waiting.inForce.count, 4);
    assert.equal(waiting.next.count, 7);
    assert.deepEqual(waiting.layouts.map((l) => l.count), [4, 7]);
    assert.equal(waiting.moving, false);
    assert.match(await metrics(second.url), /^bw_ledger_reshard_pending 1$/m);
    assert.deepEqual(await everything(second.url, old), before, 'while the new layout waits');
    assert.ok((await shards(second.url)).next, 'those reads were all made before the start');
    await started(second.url, 7);
    assert.deepEqual(await everything(second.url, old), before, 'once it is in force');

    // The old messages' next callbacks land where their history is.
    await send(second.url, old, 'message-delivered');
    for (const id of old.slice(0, 50)) {
      const m = (await getJson(second.url, `/messages/${id}`)).json;
      assert.deepEqual(m.timeline.map((e) => e.type), ['message-sending', 'message-delivered'], id);
    }
    // Bandwidth's retry for the erased message is still answered, not stored.
    const retry = await postCallback(second.url, erasedEvent);
    assert.equal((await retry.json()).erased, 1);
    assert.equal((await getJson(second.url, `/messages/${erased}`)).status, 404);

    // Messages made now are placed by 7 shards, and forwarded from the new
    // shards too (the registry handed them the API-made target).
    const fresh = Array.from({ length: 140 }, bandwidthId);
    await send(second.url, fresh);
    await send(second.url, fresh, 'message-delivered');
    const after = await shards(second.url);
    assert.equal(after.inForce.count, 7);
    assert.equal(after.shards.length, 7);
    const rows = after.shards.map((s) => s.listRows);
    assert.equal(rows.reduce((a, b) => a + b, 0), 640);
    assert.ok(rows.slice(4).every((n) => n > 5), `new shards take new messages: ${rows}`);
    assert.ok(after.shards.every((s) => s.newMessages));
    const listed = await listAll(second.url);
    assert.equal(listed.total, 640);
    assert.equal(new Set(listed.ids).size, 640);
    assert.equal((await listAll(second.url, '&messageStatus=DELIVERED')).total, 640);
    // Two forwards per message to the disabled target (sending, delivered),
    // wherever the message is; the deleted target's letters are unchanged.
    const now = await forwards(second.url);
    assert.deepEqual(now.stats.find((t) => t.target === 'held'), { target: 'held', pending: 0, paused: 1280, dead: 0, delivered: 0 });
    assert.deepEqual(now.dead, before.forwards.dead);
    await forwardedOnce(receiver, [...old, ...fresh]);
    const text = await metrics(second.url);
    assert.match(text, /^bw_ledger_shards 7$/m);
    assert.match(text, /^bw_ledger_reshard_pending 0$/m);
  } finally {
    await second.stop();
    receiver.close();
  }
});

test('lowering 7 → 3: old messages stay where they are and read the same; new ones use 3 shards', async () => {
  const first = await start(7);
  const old = Array.from({ length: 105 }, bandwidthId);
  let persistDir;
  let before;
  let spread;
  try {
    await send(first.url, old);
    before = await everything(first.url, old);
    spread = (await shards(first.url)).shards.map((s) => s.listRows);
    assert.ok(spread.every((n) => n > 0), `${spread}`);
    persistDir = first.persistDir;
  } finally {
    await first.stop();
  }
  const second = await start(3, { persistDir, vars: { RETENTION_DAYS: '30' } });
  try {
    assert.deepEqual(await everything(second.url, old), before, 'while 3 waits');
    await started(second.url, 3);
    assert.deepEqual(await everything(second.url, old), before, 'once 3 is in force');
    const fresh = Array.from({ length: 60 }, bandwidthId);
    await send(second.url, fresh);
    const now = await shards(second.url);
    assert.equal(now.inForce.count, 3);
    assert.equal(now.shards.length, 7, 'reads still reach every shard that holds messages');
    const rows = now.shards.map((s) => s.listRows);
    assert.deepEqual(rows.slice(3), spread.slice(3), 'shards 3 to 6 take no new message');
    assert.deepEqual(now.shards.map((s) => s.newMessages), [true, true, true, false, false, false, false]);
    const emptyBy = Date.parse(now.inForce.since) + 32 * 86_400_000;
    assert.deepEqual(now.shards.map((s) => s.emptyBy && Date.parse(s.emptyBy)), [undefined, undefined, undefined, emptyBy, emptyBy, emptyBy, emptyBy]);
    assert.equal(rows.reduce((a, b) => a + b, 0), 165);
    const listed = await listAll(second.url);
    assert.equal(listed.total, 165);
    assert.equal(new Set(listed.ids).size, 165);
  } finally {
    await second.stop();
  }
});

test('two Worker versions, with 4 and 7 shards, fed the same messages across the change, store every callback once', async () => {
  const name = `bwl-v1-${process.pid}-${Date.now().toString(36)}`;
  const v1 = await start(4, { name });
  let v2;
  try {
    assert.equal((await shards(v1.url)).inForce.count, 4);
    // The second version was uploaded later: its count is the one recorded.
    v2 = await start(7, { name: `${name}-v2`, bindTo: name });
    const at = (s) => `2026-11-20T15:04:0${s}.000Z`;
    const both = (body) => Promise.all([postCallback(v1.url, body), postCallback(v2.url, body)]);
    const ids = [];
    const rounds = [];
    // Messages made before, across and after the new layout's start.
    const until = Date.now() + LEAD_MS + 2000;
    while (Date.now() < until) {
      const id = bandwidthId();
      ids.push(id);
      rounds.push(both([statusEvent(id, { type: 'message-sending', description: 'sending', time: at(1) })]));
      rounds.push(postCallback(v2.url, [statusEvent(id, { type: 'message-sent', description: 'sent', time: at(2) })]));
      rounds.push(postCallback(v1.url, [statusEvent(id, { type: 'message-delivered', time: at(3) })]));
      await new Promise((r) => setTimeout(r, 60));
    }
    for (const answer of (await Promise.all(rounds)).flat()) assert.equal(answer.status, 200);
    for (const id of ids) {
      const [a, b] = await Promise.all([v1, v2].map((w) => getJson(w.url, `/messages/${encodeURIComponent(id)}`)));
      assert.equal(a.status, 200, a.text);
      assert.equal(b.text, a.text, 'both versions read the same message');
      assert.deepEqual(a.json.timeline.map((e) => e.type), ['message-sending', 'message-sent', 'message-delivered'], id);
    }
    for (const w of [v1, v2]) {
      const listed = await listAll(w.url);
      assert.equal(listed.total, ids.length);
      assert.equal(new Set(listed.ids).size, ids.length);
      const seen = await shards(w.url);
      assert.deepEqual(seen.layouts.map((l) => l.count), [4, 7]);
      assert.deepEqual(seen.requested.map((r) => r.count), [4], 'the older version still asks for 4');
      assert.equal(seen.shards.reduce((n, s) => n + s.listRows, 0), ids.length);
      assert.ok(seen.shards.slice(4).some((s) => s.listRows > 0), 'messages made after the start are on the new shards');
    }
    const logged = await waitFor(() => /LEDGER_SHARDS is 4, but a newer version recorded 7 shards/.test(readFileSync(v1.logFile, 'utf8')));
    assert.ok(logged, 'the older version logs that its var is not the one in force');
  } finally {
    await v2?.stop();
    await v1.stop();
  }
});

test('killed five times while the change is recorded and starts: nothing lost or doubled, one new layout', async () => {
  const first = await start(4);
  const ids = Array.from({ length: 40 }, bandwidthId);
  let persistDir = first.persistDir;
  try {
    await send(first.url, ids);
  } finally {
    await first.stop();
  }
  const acked = [...ids];
  for (let round = 0; round < 5; round++) {
    const w = await start(7, { persistDir });
    const batch = Array.from({ length: 10 }, bandwidthId);
    const posts = batch.map((id) =>
      postCallback(w.url, [statusEvent(id, { type: 'message-sending', description: 'sending', time: new Date().toISOString() })])
        .then((r) => { if (r.status === 200) acked.push(id); }, () => {}));
    await new Promise((r) => setTimeout(r, 150 + round * 500));
    await w.kill();
    await Promise.all(posts);
  }
  const last = await start(7, { persistDir });
  try {
    const seen = await shards(last.url);
    assert.deepEqual(seen.layouts.map((l) => l.count), [4, 7], 'restarts with the same count record one layout');
    const listed = await listAll(last.url);
    assert.equal(new Set(listed.ids).size, listed.ids.length, 'no message listed twice');
    const stored = new Set(listed.ids.map((k) => k.split('/')[0]));
    for (const id of acked) assert.ok(stored.has(id), `${id} was acknowledged and is stored`);
    for (const id of ids) {
      const m = (await getJson(last.url, `/messages/${id}`)).json;
      assert.equal(m.timeline.length, 1, 'stored once');
    }
  } finally {
    await last.stop();
  }
});

// The shard layout is recorded once and outlives a change of LEDGER_SHARDS:
// a Worker restarted (or rolled out) with another count keeps routing every
// message to the shard that holds it, and GET /shards says what was asked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startWorker, postCallback, getJson, statusEvent, uniqueId, waitFor, API } from './harness.mjs';

const ACCOUNT = '9900000';
const MESSAGES = 60;

async function listAll(url, query = '') {
  const ids = [];
  let total;
  let token = null;
  do {
    const r = await getJson(url, `/api/v2/users/${ACCOUNT}/messages?limit=25${query}${token ? `&pageToken=${token}` : ''}`);
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

test('a changed LEDGER_SHARDS moves nothing: every message reads as before and its next callback sees its history', async () => {
  const first = await startWorker({ vars: { LEDGER_SHARDS: '4', BW_ACCOUNT_ID: ACCOUNT } });
  const ids = Array.from({ length: MESSAGES }, () => uniqueId('layout'));
  let persistDir;
  let before;
  let listed;
  try {
    for (const id of ids) {
      const r = await postCallback(first.url, [statusEvent(id, { type: 'message-sending', description: 'sending', time: '2026-11-20T15:04:05.000Z' })]);
      assert.equal(r.status, 200);
    }
    before = await readAll(first.url, ids);
    listed = await listAll(first.url);
    assert.equal(listed.total, MESSAGES);
    const shards = await getJson(first.url, '/shards');
    assert.equal(shards.status, 200, shards.text);
    assert.equal(shards.json.inForce.count, 4);
    assert.deepEqual(shards.json.requested, []);
    assert.equal(shards.json.moving, false);
    assert.deepEqual(shards.json.shards.map((s) => s.name), [0, 1, 2, 3].map((i) => `ledger-shard-${i}`));
    const spread = shards.json.shards.map((s) => s.listRows);
    assert.equal(spread.reduce((a, b) => a + b, 0), MESSAGES);
    assert.ok(spread.every((n) => n > 0), `60 messages over 4 shards leave none empty: ${spread}`);
    assert.equal((await getJson(first.url, '/shards', {})).status, 401);
    persistDir = first.persistDir;
  } finally {
    await first.stop();
  }

  const second = await startWorker({ persistDir, vars: { LEDGER_SHARDS: '7', BW_ACCOUNT_ID: ACCOUNT } });
  try {
    assert.deepEqual(await readAll(second.url, ids), before, 'every message answers byte-identically');
    assert.deepEqual(await listAll(second.url), listed, 'the List gives the same rows and totalCount');
    assert.deepEqual(await listAll(second.url, '&messageStatus=SENDING'), listed);
    for (const id of ids) {
      const r = await postCallback(second.url, [statusEvent(id, { type: 'message-delivered' })]);
      assert.equal(r.status, 200);
    }
    for (const id of ids) {
      const m = (await getJson(second.url, `/messages/${encodeURIComponent(id)}`)).json;
      assert.deepEqual(m.timeline.map((e) => e.type), ['message-sending', 'message-delivered'], id);
      assert.equal(m.recipients[0].status, 'delivered', id);
    }
    assert.equal((await listAll(second.url, '&messageStatus=DELIVERED')).total, MESSAGES);
    const shards = (await getJson(second.url, '/shards')).json;
    assert.equal(shards.inForce.count, 4, 'the recorded layout stays in force');
    assert.equal(shards.shards.length, 4);
    assert.deepEqual(shards.requested.map((r) => r.count), [7]);
    assert.ok(Date.parse(shards.requested[0].firstSeen) >= Date.parse(shards.inForce.since));
    const metrics = await (await fetch(`${second.url}/metrics`, { headers: API })).text();
    assert.match(metrics, /^bw_ledger_shards 4$/m);
    assert.match(metrics, /^bw_ledger_shards_requested\{count="7"\} 1$/m);
    const logged = await waitFor(() => /LEDGER_SHARDS is 7, but the data is laid out over 4 shards/.test(readFileSync(second.logFile, 'utf8')));
    assert.ok(logged, 'the differing var is logged');
  } finally {
    await second.stop();
  }
});

test('the first count asked for is the layout of a fresh deployment', async () => {
  const w = await startWorker({ vars: { LEDGER_SHARDS: '3', BW_ACCOUNT_ID: ACCOUNT } });
  try {
    const r = await getJson(w.url, '/shards', API);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.inForce.count, 3);
    assert.ok(Math.abs(Date.parse(r.json.inForce.since) - Date.now()) < 60_000);
    assert.deepEqual(r.json.shards.map((s) => s.listRows), [0, 0, 0]);
  } finally {
    await w.stop();
  }
});

test('two Worker versions, with 4 and 7 shards, on one namespace store every callback of the same messages once', async () => {
  const name = `bwl-v1-${process.pid}-${Date.now().toString(36)}`;
  const v1 = await startWorker({ name, vars: { LEDGER_SHARDS: '4', BW_ACCOUNT_ID: ACCOUNT } });
  let v2;
  try {
    assert.equal((await getJson(v1.url, '/shards')).json.inForce.count, 4);
    v2 = await startWorker({ name: `${name}-v2`, bindTo: name, vars: { LEDGER_SHARDS: '7', BW_ACCOUNT_ID: ACCOUNT } });
    const ids = Array.from({ length: 40 }, () => uniqueId('twov'));
    const at = (s) => `2026-11-20T15:04:0${s}.000Z`;
    // Every message gets `sending` from both versions at once (one event,
    // posted twice), then `sent` from v2 and `delivered` from v1 at once.
    const both = (body) => Promise.all([postCallback(v1.url, body), postCallback(v2.url, body)]);
    const rounds = [];
    for (const id of ids) {
      rounds.push(both([statusEvent(id, { type: 'message-sending', description: 'sending', time: at(1) })]));
      rounds.push(postCallback(v2.url, [statusEvent(id, { type: 'message-sent', description: 'sent', time: at(2) })]));
      rounds.push(postCallback(v1.url, [statusEvent(id, { type: 'message-delivered', time: at(3) })]));
    }
    for (const answer of (await Promise.all(rounds)).flat()) assert.equal(answer.status, 200);
    for (const id of ids) {
      const [a, b] = await Promise.all([v1, v2].map((w) => getJson(w.url, `/messages/${encodeURIComponent(id)}`)));
      assert.equal(a.status, 200, a.text);
      assert.equal(b.text, a.text, 'both versions read the same message');
      assert.deepEqual(a.json.timeline.map((e) => e.type), ['message-sending', 'message-sent', 'message-delivered'], id);
      assert.equal(a.json.recipients[0].status, 'delivered');
    }
    for (const w of [v1, v2]) {
      const listed = await listAll(w.url);
      assert.equal(listed.total, ids.length);
      assert.equal(new Set(listed.ids).size, ids.length);
      const shards = (await getJson(w.url, '/shards')).json;
      assert.equal(shards.inForce.count, 4);
      assert.deepEqual(shards.requested.map((r) => r.count), [7]);
      assert.equal(shards.shards.reduce((n, s) => n + s.listRows, 0), ids.length);
    }
  } finally {
    await v2?.stop();
    await v1.stop();
  }
});

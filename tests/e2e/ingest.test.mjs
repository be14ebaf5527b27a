// Every event type stored and readable, exactly once, and bad input kept.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, postCallback, getJson, fixture, uniqueId, statusEvent } from './harness.mjs';

let w;
before(async () => { w = await startWorker(); });
after(async () => { await w?.stop(); });

/** A fixture with its message ids made unique to this run. */
function fresh(name) {
  const suffix = uniqueId('x');
  const events = JSON.parse(fixture(name));
  for (const ev of events) ev.message.id = `${ev.message.id}-${suffix}`;
  return events;
}

async function message(id) {
  const r = await getJson(w.url, `/messages/${encodeURIComponent(id)}`);
  assert.equal(r.status, 200, `message ${id}: ${r.text}`);
  return r.json;
}

async function quarantine() {
  const r = await getJson(w.url, '/quarantine?limit=1000');
  assert.equal(r.status, 200);
  return r.json.items;
}

test('every current event type is stored and readable with its full timeline', async () => {
  const all = ['sms_outbound_lifecycle.json', 'group_mms_invalid_number.json', 'inbound_mms.json',
    'failed_with_error.json', 'rbm_read_and_responses.json'].flatMap(fresh);
  const types = new Set(all.map((e) => e.type));
  for (const t of ['message-received', 'message-sending', 'message-sent', 'message-delivered',
    'message-failed', 'message-read', 'suggestion-response', 'requested-location-response']) {
    assert.ok(types.has(t), `fixtures cover ${t}`);
  }
  const r = await postCallback(w.url, all);
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { stored: all.length, duplicates: 0, conflicts: 0, quarantined: 0 });

  const byId = new Map();
  for (const e of all) byId.set(e.message.id, [...(byId.get(e.message.id) ?? []), e]);
  for (const [id, events] of byId) {
    const m = await message(id);
    assert.equal(m.messageId, id);
    assert.equal(m.timeline.length, events.length, id);
    // Every field of every event is kept, including ones we do not model.
    const key = (e) => `${e.type}|${e.to}|${e.time}`;
    const byKey = (a, b) => key(a).localeCompare(key(b));
    const stored = m.timeline.map((t) => t.event).sort(byKey);
    const sent = [...events].sort(byKey);
    assert.deepEqual(stored, sent, id);
  }
});

test('the group MMS view: one outcome per recipient, contradiction marked, content kept', async () => {
  const events = fresh('group_mms_invalid_number.json');
  assert.equal((await postCallback(w.url, events)).status, 200);
  const m = await message(events[0].message.id);
  const status = Object.fromEntries(m.recipients.map((r) => [r.number, r]));
  assert.equal(status['+15553330003'].status, 'failed');
  assert.equal(status['+15553330003'].errorCode, 4720);
  assert.deepEqual(status['+15553330003'].flags, ['contradiction']);
  assert.equal(status['+15553330001'].status, 'delivered');
  assert.deepEqual(status['+15553330001'].flags, ['network-handoff-only']);
  assert.deepEqual(m.timeline.filter((t) => t.contradicted).map((t) => [t.type, t.recipient]),
    [['message-delivered', '+15553330003']]);
  assert.deepEqual(m.media, events[0].message.media);
});

test('inbound content is kept from the richest event; status events carry empty text', async () => {
  const [inbound] = fresh('inbound_mms.json');
  const echo = structuredClone(inbound);
  echo.type = 'message-delivered';
  echo.message.text = '';
  echo.time = '2026-11-20T17:30:05.000Z';
  assert.equal((await postCallback(w.url, [echo])).status, 200);
  assert.equal((await postCallback(w.url, [inbound])).status, 200);
  const m = await message(inbound.message.id);
  assert.equal(m.text, 'Here is the photo of the receipt');
  assert.equal(m.media.length, 2);
  assert.deepEqual(m.timeline.map((t) => t.type), ['message-received', 'message-delivered']);
});

test('a single event object and an unknown event type are stored, never dropped', async () => {
  const id = uniqueId('single');
  const r = await postCallback(w.url, statusEvent(id, { type: 'message-sent' }));
  assert.equal(r.status, 200);
  assert.equal((await r.json()).stored, 1);
  const unknown = statusEvent(id, { type: 'message-teleported', extra: { wormhole: 'B612' } });
  assert.equal((await postCallback(w.url, [unknown])).status, 200);
  const m = await message(id);
  assert.deepEqual(m.timeline.map((t) => t.type).sort(), ['message-sent', 'message-teleported']);
  assert.equal(m.timeline.find((t) => t.type === 'message-teleported').event.wormhole, 'B612');
});

test('50 concurrent identical retries leave exactly one event', async () => {
  const id = uniqueId('storm');
  const body = JSON.stringify([statusEvent(id), statusEvent(id, { type: 'message-sent', time: '2026-11-20T15:04:06.000Z' })]);
  const replies = await Promise.all(Array.from({ length: 50 }, () => postCallback(w.url, body)));
  const bodies = await Promise.all(replies.map((r) => r.json()));
  assert.deepEqual(replies.map((r) => r.status), Array(50).fill(200));
  assert.equal(bodies.reduce((n, b) => n + b.stored, 0), 2, 'each event stored by exactly one request');
  assert.equal(bodies.reduce((n, b) => n + b.duplicates, 0), 98);
  const m = await message(id);
  assert.equal(m.timeline.length, 2);
});

test('a retry with other key order and whitespace is a duplicate, not a new event', async () => {
  const id = uniqueId('reorder');
  const ev = statusEvent(id);
  assert.equal((await postCallback(w.url, [ev])).status, 200);
  const reordered = Object.fromEntries(Object.entries(ev).reverse());
  const r = await postCallback(w.url, JSON.stringify([reordered], null, 2));
  assert.deepEqual(await r.json(), { stored: 0, duplicates: 1, conflicts: 0, quarantined: 0 });
  assert.equal((await message(id)).timeline.length, 1);
});

test('same identity with different content is kept as a conflict, never overwriting', async () => {
  const id = uniqueId('conflict');
  const original = statusEvent(id, { type: 'message-failed', errorCode: 4720, description: 'invalid-to-number' });
  const changed = { ...original, description: 'something else', carrierName: 'Other' };
  assert.equal((await postCallback(w.url, [original])).status, 200);
  const r = await postCallback(w.url, [changed]);
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { stored: 0, duplicates: 0, conflicts: 1, quarantined: 0 });
  // Retrying the conflicting content records it once.
  await postCallback(w.url, [changed]);
  const m = await message(id);
  assert.equal(m.timeline.length, 1);
  assert.equal(m.timeline[0].event.description, 'invalid-to-number');
  assert.equal(m.conflicts.length, 1);
  assert.equal(m.conflicts[0].event.description, 'something else');
  assert.deepEqual(m.conflicts[0].eventKey, [id, 'message-failed', '+15552220001', original.time, 4720]);
});

test('two contents under one identity racing each other: one stored, the other a conflict, each reply its own', async () => {
  // Concurrent callbacks for one shard ride in the same group commit; the
  // replies must still be per callback.
  const id = uniqueId('race');
  const a = statusEvent(id, { type: 'message-failed', errorCode: 4720, description: 'first' });
  const b = { ...a, description: 'second' };
  const bodies = Array.from({ length: 20 }, (_, i) => JSON.stringify([i % 2 ? b : a]));
  const replies = await Promise.all(bodies.map((body) => postCallback(w.url, body)));
  const got = await Promise.all(replies.map((r) => r.json()));
  assert.deepEqual(replies.map((r) => r.status), Array(20).fill(200));
  const sum = (k) => got.reduce((n, g) => n + g[k], 0);
  assert.equal(sum('stored'), 1);
  // Whichever content won, its 9 other copies are duplicates and the 10
  // copies of the other content are conflicts.
  assert.equal(sum('duplicates'), 9);
  assert.equal(sum('conflicts'), 10);
  const winner = got.findIndex((g) => g.stored === 1);
  const m = await message(id);
  assert.equal(m.timeline.length, 1);
  assert.equal(m.timeline[0].event.description, winner % 2 ? 'second' : 'first');
  assert.equal(m.conflicts.length, 1, 'the losing content is kept once');
  assert.equal(m.conflicts[0].event.description, winner % 2 ? 'first' : 'second');
});

test('large events near the body limit are stored, several for one message', async () => {
  // Quotes double when a callback's JSON is embedded in other JSON: an
  // event stored or read back as part of a larger JSON string would pass
  // SQLite's 2 MB string limit.
  const id = uniqueId('large');
  const text = '"'.repeat(500_000);
  const received = { ...statusEvent(id, { type: 'message-received', to: '+15551110000' }) };
  received.message = { ...received.message, direction: 'in', text };
  for (const type of ['message-received', 'message-delivered', 'message-read']) {
    const body = JSON.stringify([{ ...received, type }]);
    assert.ok(body.length > 1_000_000 && body.length < 1024 * 1024, `body is ${body.length} bytes`);
    const r = await postCallback(w.url, body);
    assert.equal(r.status, 200, await r.text());
  }
  const m = await message(id);
  assert.equal(m.timeline.length, 3);
  assert.equal(m.timeline[0].event.message.text.length, 500_000);
});

test('authenticated non-JSON is kept in the quarantine, deduplicated by content hash', async () => {
  const garbage = `this is not json ${uniqueId('g')}`;
  for (let i = 0; i < 3; i++) {
    const r = await postCallback(w.url, garbage);
    assert.equal(r.status, 200);
    assert.equal((await r.json()).quarantined, 1);
  }
  const items = (await quarantine()).filter((q) => q.raw === garbage);
  assert.equal(items.length, 1);
  assert.equal(items[0].seenCount, 3);
  assert.equal(items[0].rawEncoding, 'utf8');
  assert.match(items[0].reason, /not JSON/);
  assert.match(items[0].contentHash, /^[0-9a-f]{64}$/);
});

test('JSON that is not events, and non-UTF-8 bytes, are quarantined exactly', async () => {
  const tag = uniqueId('notevents');
  const notEvents = JSON.stringify({ hello: tag });
  assert.equal((await postCallback(w.url, notEvents)).status, 200);
  const binary = Buffer.concat([Buffer.from([0xff, 0xfe, 0x00]), Buffer.from(tag)]);
  assert.equal((await postCallback(w.url, binary)).status, 200);
  const items = await quarantine();
  assert.ok(items.some((q) => q.raw === notEvents && q.rawEncoding === 'utf8'));
  const b = items.find((q) => q.rawEncoding === 'base64' && Buffer.from(q.raw, 'base64').equals(binary));
  assert.ok(b, 'binary body kept byte for byte');
});

test('an array with malformed elements stores the valid events and quarantines each bad one', async () => {
  const id = uniqueId('mixed');
  const bad1 = { type: 'message-sent', note: uniqueId('nomessage') };
  const bad2 = `"just a string ${uniqueId('s')}"`;
  const body = `[${JSON.stringify(statusEvent(id))}, ${JSON.stringify(bad1)}, ${bad2}]`;
  const r = await postCallback(w.url, body);
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { stored: 1, duplicates: 0, conflicts: 0, quarantined: 2 });
  assert.equal((await message(id)).timeline.length, 1);
  const items = await quarantine();
  assert.ok(items.some((q) => q.raw === JSON.stringify(bad1) && /element 1/.test(q.reason)));
  assert.ok(items.some((q) => q.raw === bad2 && /element 2/.test(q.reason)));
});

test('message ids with URL-unsafe characters round-trip', async () => {
  const id = `${uniqueId('odd')}+/ ?#é`;
  assert.equal((await postCallback(w.url, [statusEvent(id)])).status, 200);
  assert.equal((await message(id)).messageId, id);
});

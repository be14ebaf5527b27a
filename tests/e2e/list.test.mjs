// List Messages and conversations against the Worker under workerd.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { Configuration, MessagesApi } from 'bandwidth-sdk';
import { startWorker, postCallback, getJson, uniqueId, ROOT, API, sha256 } from './harness.mjs';

const ACCOUNT = '9900000';
const CLIENT_KEY = 'list-client-key';
const CLIENT_KEYS = JSON.stringify([{ id: 'reader', key_sha256: sha256(CLIENT_KEY), allowed_from: ['+18005550100'] }]);

let w;
before(async () => { w = await startWorker({ vars: { BW_ACCOUNT_ID: ACCOUNT, CLIENT_KEYS } }); });
after(async () => { await w?.stop(); });

let numberSeq = 0;
/** A source number no other test uses, so filters isolate each test's data. */
function freshNumber() {
  numberSeq += 1;
  return `+1900${String(process.pid % 1000).padStart(3, '0')}${String(numberSeq).padStart(4, '0')}`;
}

function event(type, id, { from, to, recipients = [to], time, text = '', media, errorCode, carrierName, direction = 'out', eventTime } = {}) {
  const ev = {
    type, time: eventTime ?? time, description: type, to,
    message: { id, owner: direction === 'out' ? from : to, applicationId: 'app', time, segmentCount: 1, direction, to: recipients, from, text },
  };
  if (media) ev.message.media = media;
  if (errorCode !== undefined) ev.errorCode = errorCode;
  if (carrierName) ev.carrierName = carrierName;
  return ev;
}

async function list(query, headers = API) {
  const r = await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages?${query}`, headers);
  assert.equal(r.status, 200, `${query}: ${r.text}`);
  return r.json;
}

test('the group invalid-number scenario lists exactly one FAILED and one DELIVERED row', async () => {
  const from = freshNumber();
  const id = uniqueId('grp');
  const opts = { from, recipients: ['+15553330001', '+15553330003'], time: '2026-11-20T16:00:00.000Z', media: ['https://example.com/p.jpg'] };
  // failed then delivered for the invalid number, delivered for the valid one.
  await postCallback(w.url, [event('message-failed', id, { ...opts, to: '+15553330003', errorCode: 4720, eventTime: '2026-11-20T16:00:01.000Z' })]);
  await postCallback(w.url, [event('message-delivered', id, { ...opts, to: '+15553330003', eventTime: '2026-11-20T16:00:02.000Z' })]);
  await postCallback(w.url, [event('message-delivered', id, { ...opts, to: '+15553330001', eventTime: '2026-11-20T16:00:02.000Z' })]);
  const res = await list(`messageId=${id}`);
  assert.equal(res.totalCount, 2);
  const byTn = Object.fromEntries(res.messages.map((m) => [m.destinationTn, m]));
  assert.equal(byTn['+15553330003'].messageStatus, 'FAILED');
  assert.equal(byTn['+15553330003'].errorCode, 4720);
  assert.equal(byTn['+15553330001'].messageStatus, 'DELIVERED');
  assert.equal(byTn['+15553330001'].messageType, 'mms');
  assert.equal(byTn['+15553330001'].recipientCount, 2);
});

test('paging through 1,000 messages across shards sees each exactly once, while new events arrive', async () => {
  const from = freshNumber();
  const base = Date.parse('2026-11-01T00:00:00Z');
  const ids = Array.from({ length: 1000 }, (_, i) => `page-${from}-${i}`);
  const evs = ids.map((id, i) => event('message-sending', id, {
    from, to: `+1555${String(i).padStart(7, '0')}`, time: new Date(base + (i % 50) * 1000).toISOString(),
  }));
  for (let i = 0; i < evs.length; i += 100) assert.equal((await postCallback(w.url, evs.slice(i, i + 100))).status, 200);

  const seen = new Map();
  let token = null;
  let pages = 0;
  let total;
  do {
    const res = await list(`sourceTn=${encodeURIComponent(from)}&limit=37${token ? `&pageToken=${token}` : ''}`);
    total ??= res.totalCount;
    for (const m of res.messages) seen.set(m.messageId, (seen.get(m.messageId) ?? 0) + 1);
    token = res.pageInfo.nextPageToken;
    pages += 1;
    // Meanwhile: status changes on rows already listed and not yet listed,
    // and brand-new messages, both newer and older than the cursor.
    const k = pages * 13;
    await postCallback(w.url, [
      event('message-delivered', ids[k], { from, to: evs[k].to, time: evs[k].message.time, eventTime: '2026-11-02T00:00:00Z' }),
      event('message-delivered', ids[999 - k], { from, to: evs[999 - k].to, time: evs[999 - k].message.time, eventTime: '2026-11-02T00:00:00Z' }),
      event('message-sending', `new-${from}-${pages}`, { from, to: '+15550000000', time: new Date(base + (pages % 2 ? 10e6 : -10e6)).toISOString() }),
    ]);
  } while (token);
  assert.equal(total, 1000);
  assert.equal(pages, 28);
  for (const id of ids) assert.equal(seen.get(id), 1, id);
  for (const [id, n] of seen) assert.equal(n, 1, `${id} seen ${n} times`);
});

test('filters: prefix and lists of numbers, status, direction, type, error, carrier, dates, sort', async () => {
  const from = freshNumber();
  const to1 = '+16175550101', to2 = '+16175550102', to3 = '+14155550103';
  const msgs = [
    event('message-delivered', uniqueId('f'), { from, to: to1, time: '2026-10-01T00:00:00.000Z', carrierName: 'Verizon' }),
    event('message-failed', uniqueId('f'), { from, to: to2, time: '2026-10-02T00:00:00.000Z', errorCode: 4432, carrierName: 'AT&T' }),
    event('message-delivered', uniqueId('f'), { from, to: to3, time: '2026-10-03T00:00:00.000Z', media: ['https://example.com/a.png'] }),
    event('message-received', uniqueId('f'), { from: to1, to: from, time: '2026-10-04T00:00:00.000Z', direction: 'in', text: 'reply' }),
  ];
  assert.equal((await postCallback(w.url, msgs)).status, 200);
  const mine = `sourceTn=${encodeURIComponent(from)}`;
  const ids = (res) => res.messages.map((m) => m.messageId);
  assert.equal((await list(mine)).totalCount, 3);
  assert.deepEqual(ids(await list(`${mine}&destinationTn=${encodeURIComponent('+1617555')}`)).length, 2, 'prefix');
  assert.deepEqual(ids(await list(`${mine}&destinationTn=${encodeURIComponent(`${to1},${to3}`)}`)).sort(), [msgs[0], msgs[2]].map((m) => m.message.id).sort(), 'list');
  assert.deepEqual(ids(await list(`${mine}&messageStatus=FAILED`)), [msgs[1].message.id]);
  assert.deepEqual(ids(await list(`${mine}&errorCode=4432`)), [msgs[1].message.id]);
  assert.deepEqual(ids(await list(`${mine}&carrierName=${encodeURIComponent('AT&T')}`)), [msgs[1].message.id]);
  assert.deepEqual(ids(await list(`${mine}&messageType=mms`)), [msgs[2].message.id]);
  assert.deepEqual(ids(await list(`${mine}&fromDateTime=2026-10-02T00:00:00.000Z&toDateTime=2026-10-02T23:59:59.000Z`)), [msgs[1].message.id]);
  assert.deepEqual(ids(await list(`${mine}&sort=receiveTime:asc`)), msgs.slice(0, 3).map((m) => m.message.id));
  assert.deepEqual(ids(await list(`${mine}`)), msgs.slice(0, 3).map((m) => m.message.id).reverse(), 'newest first by default');
  const inbound = await list(`destinationTn=${encodeURIComponent(from)}&messageDirection=INBOUND`);
  assert.deepEqual(ids(inbound), [msgs[3].message.id]);
  assert.equal(inbound.messages[0].messageStatus, 'RECEIVED');
  const bad = await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages?messageStatus=NOPE`);
  assert.equal(bad.status, 400);
  assert.equal(bad.json.type, 'bad-request');
});

test('the response matches the field names and types of Bandwidth\'s published List Messages schema', async () => {
  const spec = yaml.load(readFileSync(join(ROOT, 'node_modules/bandwidth-sdk/bandwidth.yml'), 'utf8'));
  const schemas = spec.components.schemas;
  const resolve = (s) => (s.$ref ? schemas[s.$ref.split('/').at(-1)] : s);
  const checkObject = (obj, schema, where) => {
    for (const [k, v] of Object.entries(obj)) {
      const prop = schema.properties[k];
      assert.ok(prop, `${where}.${k} is not in Bandwidth's schema`);
      const s = resolve(prop);
      if (v === null) { assert.ok(s.nullable, `${where}.${k} is null but not nullable`); continue; }
      const type = s.type === 'integer' ? (Number.isInteger(v) ? 'integer' : typeof v) : typeof v;
      assert.equal(type, s.type === 'array' ? 'object' : s.type, `${where}.${k}`);
      if (s.enum) assert.ok(s.enum.includes(v), `${where}.${k}=${v} not in ${s.enum}`);
      if (s.format === 'date-time') assert.ok(!Number.isNaN(Date.parse(v)), `${where}.${k} is a date-time`);
    }
  };
  const from = freshNumber();
  const evs = [
    event('message-delivered', uniqueId('s'), { from, to: '+15557770001', time: '2026-10-01T00:00:00.000Z', carrierName: 'Verizon' }),
    event('message-failed', uniqueId('s'), { from, to: '+15557770002', time: '2026-10-01T00:00:01.000Z', errorCode: 9902 }),
  ];
  await postCallback(w.url, evs);
  const res = await list(`sourceTn=${encodeURIComponent(from)}&limit=1`);
  checkObject(res, schemas.messagesList, 'messagesList');
  checkObject(res.pageInfo, schemas.pageInfo, 'pageInfo');
  assert.ok(res.pageInfo.nextPageToken && res.pageInfo.nextPage.includes(`pageToken=${res.pageInfo.nextPageToken}`));
  for (const m of res.messages) checkObject(m, schemas.listMessageItem, 'listMessageItem');
  assert.equal(res.messages.length, 1);
});

test("Bandwidth's SDK listMessages parses the answer", async () => {
  const from = '+18005550100'; // the client key's own number
  const id = uniqueId('sdk');
  await postCallback(w.url, [event('message-sent', id, { from, to: '+15558880001', time: '2026-10-05T00:00:00.000Z' })]);
  const api = new MessagesApi(new Configuration({ username: 'reader', password: CLIENT_KEY, basePath: `${w.url}/api/v2` }));
  const { status, data } = await api.listMessages(ACCOUNT, id);
  assert.equal(status, 200);
  assert.equal(data.totalCount, 1);
  assert.equal(data.messages[0].messageId, id);
  assert.equal(data.messages[0].messageStatus, 'SENT');
});

test('include=content adds text and media; a client key sees only its own numbers; a token is required', async () => {
  const mine = '+18005550100';
  const other = freshNumber();
  const a = uniqueId('c');
  const b = uniqueId('c');
  await postCallback(w.url, [
    event('message-received', a, { from: '+15559990001', to: mine, time: '2026-10-06T00:00:00.000Z', direction: 'in', text: 'for the client', media: ['https://example.com/m.jpg'] }),
    event('message-received', b, { from: '+15559990001', to: other, time: '2026-10-06T00:00:00.000Z', direction: 'in', text: 'not for the client' }),
  ]);
  const plain = await list(`messageId=${a}`);
  assert.equal(plain.messages[0].text, undefined);
  const rich = await list(`messageId=${a}&include=content`);
  assert.equal(rich.messages[0].text, 'for the client');
  assert.deepEqual(rich.messages[0].media, ['https://example.com/m.jpg']);
  const asClient = { Authorization: `Bearer ${CLIENT_KEY}` };
  assert.equal((await list(`messageId=${a}`, asClient)).totalCount, 1);
  assert.equal((await list(`messageId=${b}`, asClient)).totalCount, 0, 'another number is invisible to the key');
  assert.equal((await list(`messageId=${b}`)).totalCount, 1, 'the operator sees it');
  for (const headers of [{}, { Authorization: 'Bearer nope' }]) {
    assert.equal((await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages`, headers)).status, 401);
  }
  assert.equal((await getJson(w.url, `/api/v2/users/1234/messages`)).status, 404);
});

test('conversations: both directions, in time order, with content, paginated', async () => {
  const us = freshNumber();
  const them = '+15556660001';
  const evs = [];
  for (let i = 0; i < 7; i++) {
    const time = new Date(Date.parse('2026-10-10T00:00:00Z') + i * 60e3).toISOString();
    evs.push(i % 2 === 0
      ? event('message-delivered', uniqueId('conv'), { from: us, to: them, time, text: `out ${i}` })
      : event('message-received', uniqueId('conv'), { from: them, to: us, time, direction: 'in', text: `in ${i}` }));
  }
  // Someone else's message with the same number is not part of this conversation.
  evs.push(event('message-delivered', uniqueId('conv'), { from: us, to: '+15556660002', time: '2026-10-10T00:03:30Z', text: 'elsewhere' }));
  // The outbound texts arrive with a send record in real life; here the
  // status events carry them for brevity.
  await postCallback(w.url, evs);
  const seen = [];
  let token = '';
  do {
    const r = await getJson(w.url, `/conversations?number=${encodeURIComponent(us)}&with=${encodeURIComponent(them)}&limit=3${token ? `&pageToken=${token}` : ''}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.totalCount, 7);
    seen.push(...r.json.messages);
    token = r.json.pageInfo.nextPageToken;
  } while (token);
  assert.deepEqual(seen.map((m) => m.text), ['out 0', 'in 1', 'out 2', 'in 3', 'out 4', 'in 5', 'out 6']);
  assert.deepEqual(seen.map((m) => m.messageDirection), ['OUTBOUND', 'INBOUND', 'OUTBOUND', 'INBOUND', 'OUTBOUND', 'INBOUND', 'OUTBOUND']);
  assert.equal((await getJson(w.url, `/conversations?number=${encodeURIComponent(us)}`)).status, 400);
});

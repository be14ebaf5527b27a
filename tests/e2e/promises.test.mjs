// README promises that had no test of their own: a ledger of 3 shards end
// to end, segment-count filters, the three other sorts, replay by time
// range, delivered-then-failed forwarding both in order, live publishing
// switching off and back on, 500 without callback credentials, and the
// cached OAuth token dropped (everywhere) after Bandwidth's 401.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startReceiver } from '../support/receiver.mjs';
import { startWorker, postCallback, getJson, uniqueId, statusEvent, API, SECRETS, sha256, waitFor } from './harness.mjs';
import { startFakeBandwidth } from '../support/fake-bandwidth.mjs';

const ACCOUNT = '9900000';
const KEY = 'promises-client-key';
/** Every forward the receiver saw. */
let seen;
let receiver;
let fake;
let w;

before(async () => {
  receiver = await startReceiver();
  seen = receiver.seen;
  fake = await startFakeBandwidth();
  w = await startWorker({
    vars: {
      LEDGER_SHARDS: '3', BW_ACCOUNT_ID: ACCOUNT, BW_APPLICATION_ID: 'app',
      FORWARD_TARGETS: JSON.stringify([{ id: 'hook', url: `${receiver.url}/hook`, secret: 'whsec_' + Buffer.from('promises').toString('base64') }]),
      BANDWIDTH_API_BASE: `${fake.url}/api/v2`, BANDWIDTH_TOKEN_URL: `${fake.url}/api/v1/oauth2/token`,
      BW_CLIENT_ID: 'id', BW_CLIENT_SECRET: 'secret',
      CLIENT_KEYS: JSON.stringify([{ id: 'web', key_sha256: sha256(KEY), allowed_from: ['+15558000000'] }]),
    },
  });
});
after(async () => { await w?.stop(); await fake?.close(); receiver?.close(); });

async function list(query) {
  const r = await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages?${query}`);
  assert.equal(r.status, 200, r.text);
  return r.json;
}
/** A delivered outbound message from `from` to `to` with `segments`. */
function delivered(id, { from, to, segments = 1, time = '2026-11-21T10:00:00.000Z' }) {
  return {
    type: 'message-delivered', time, description: 'ok', to,
    message: { id, owner: from, applicationId: 'app', time, segmentCount: segments, direction: 'out', to: [to], from, text: 'x' },
  };
}

test('a ledger of 3 shards stores, lists and reads back across all of them', async () => {
  const from = '+15558100000';
  const ids = Array.from({ length: 30 }, (_, i) => `shards3-${process.pid}-${i}`);
  for (const id of ids) assert.equal((await postCallback(w.url, [delivered(id, { from, to: '+15558200000' })])).status, 200);
  const all = await list(`sourceTn=${encodeURIComponent(from)}&limit=1000`);
  assert.equal(all.totalCount, 30);
  assert.deepEqual(all.messages.map((m) => m.messageId).sort(), [...ids].sort());
  for (const id of ids.slice(0, 5)) assert.equal((await getJson(w.url, `/messages/${id}`)).status, 200);
});

test('segment-count filters: fromSegmentCount and toSegmentCount, inclusive', async () => {
  const from = '+15558100001';
  const ids = [1, 2, 3, 4].map((n) => ({ n, id: uniqueId(`seg${n}`) }));
  for (const { n, id } of ids) await postCallback(w.url, [delivered(id, { from, to: '+15558200001', segments: n })]);
  const q = (extra) => list(`sourceTn=${encodeURIComponent(from)}&${extra}`);
  const segs = (r) => r.messages.map((m) => m.segmentCount).sort();
  assert.deepEqual(segs(await q('fromSegmentCount=2')), [2, 3, 4]);
  assert.deepEqual(segs(await q('toSegmentCount=2')), [1, 2]);
  assert.deepEqual(segs(await q('fromSegmentCount=2&toSegmentCount=3')), [2, 3]);
  assert.equal((await q('fromSegmentCount=5')).totalCount, 0);
});

test('sorting by sourceTn, destinationTn and messageId, both ways', async () => {
  const tag = `${process.pid}${Date.now() % 100000}`;
  const rows = [
    { id: `sort-${tag}-b`, from: '+15558300002', to: '+15558400001' },
    { id: `sort-${tag}-c`, from: '+15558300001', to: '+15558400003' },
    { id: `sort-${tag}-a`, from: '+15558300003', to: '+15558400002' },
  ];
  for (const r of rows) await postCallback(w.url, [delivered(r.id, { from: r.from, to: r.to })]);
  const filter = `sourceTn=%2B155583000`;
  const order = async (sort) => (await list(`${filter}&sort=${sort}`)).messages.map((m) => m.messageId);
  const by = (key, desc = false) => [...rows].sort((x, y) => (x[key] < y[key] ? -1 : 1) * (desc ? -1 : 1)).map((r) => r.id);
  assert.deepEqual(await order('sourceTn:asc'), by('from'));
  assert.deepEqual(await order('sourceTn:desc'), by('from', true));
  assert.deepEqual(await order('destinationTn:asc'), by('to'));
  assert.deepEqual(await order('destinationTn:desc'), by('to', true));
  assert.deepEqual(await order('messageId:asc'), by('id'));
  assert.deepEqual(await order('messageId:desc'), by('id', true));
  // Paging keeps the order: one row per page.
  const first = await list(`${filter}&sort=messageId:asc&limit=1`);
  const second = await list(`${filter}&sort=messageId:asc&limit=1&pageToken=${first.pageInfo.nextPageToken}`);
  assert.deepEqual([first.messages[0].messageId, second.messages[0].messageId], by('id').slice(0, 2));
});

test('delivered, then failed for the same recipient: both are forwarded, in that order', async () => {
  const id = uniqueId('dlv-fail');
  const base = { from: '+15558500000', to: '+15558600000' };
  await postCallback(w.url, [delivered(id, { ...base, time: '2026-11-21T10:00:01.000Z' })]);
  const failed = { ...delivered(id, base), type: 'message-failed', time: '2026-11-21T10:00:02.000Z', errorCode: 4720 };
  await postCallback(w.url, [failed]);
  const statuses = () => seen.filter((s) => s.body.messageId === id && s.body.type === 'message.status').map((s) => s.body.status);
  assert.ok(await waitFor(() => statuses().includes('failed')), JSON.stringify(statuses()));
  await new Promise((r) => setTimeout(r, 1000)); // settle: nothing else may follow
  assert.deepEqual(statuses(), ['delivered', 'failed']);
  const last = seen.filter((s) => s.body.messageId === id).at(-1).body;
  assert.equal(last.previousStatus, 'delivered');
  assert.equal(last.errorCode, 4720);
});

test('replay by time range: delivered forwards in [from, to] go again with their ids; others do not', async () => {
  const id = uniqueId('replay-range');
  const t0 = new Date(Date.now() - 1000).toISOString();
  await postCallback(w.url, [statusEvent(id, { type: 'message-sent' })]);
  assert.ok(await waitFor(() => seen.some((s) => s.body.messageId === id)));
  const t1 = new Date(Date.now() + 1000).toISOString();
  const original = seen.find((s) => s.body.messageId === id);
  const replay = async (body) => {
    const r = await fetch(`${w.url}/outbox/replay`, { method: 'POST', headers: { ...API, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(r.status, 200);
    return (await r.json()).replayed;
  };
  // A range that ends before this forward was created replays none of it.
  const before = seen.length;
  await replay({ target: 'hook', from: '2020-01-01T00:00:00Z', to: '2020-01-02T00:00:00Z' });
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(seen.filter((s) => s.body.messageId === id).length, 1);
  assert.ok(seen.length >= before);
  // A range around it replays it, with its original webhook-id.
  assert.ok(await replay({ target: 'hook', from: t0, to: t1 }) >= 1);
  assert.ok(await waitFor(() => seen.filter((s) => s.body.messageId === id).length === 2));
  const again = seen.filter((s) => s.body.messageId === id)[1];
  assert.equal(again.id, original.id);
  assert.deepEqual(again.body, original.body);
});

test('live publishing switches off with no subscriber and back on when one subscribes', async () => {
  const id = uniqueId('live-switch');
  // No subscriber: the shard publishes once, hears "nobody", switches off.
  await postCallback(w.url, [statusEvent(id, { type: 'message-sending', time: '2026-11-21T10:00:01.000Z' })]);
  await postCallback(w.url, [statusEvent(id, { type: 'message-sent', time: '2026-11-21T10:00:02.000Z' })]);
  const ws = new WebSocket(`${w.url.replace('http', 'ws')}/live?messageId=${id}`, ['bw-ledger', `token.${SECRETS.API_TOKEN}`]);
  const docs = [];
  ws.on('message', (m) => docs.push(JSON.parse(m.toString())));
  await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  try {
    // The same message, so the same shard that had switched off.
    await postCallback(w.url, [statusEvent(id, { type: 'message-delivered' })]);
    assert.ok(await waitFor(() => docs.some((d) => d.status === 'delivered')), 'the shard publishes again');
  } finally {
    ws.close();
  }
});

test('Bandwidth\'s 401 drops the cached token everywhere: the next send gets a new one', async () => {
  const send = () => fetch(`${w.url}/api/v2/users/${ACCOUNT}/messages`, {
    method: 'POST', headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ from: '+15558000000', to: ['+15558700000'], text: 'token' }),
  });
  assert.equal((await send()).status, 202);
  const tokens = fake.tokenRequests.length;
  const used = fake.messageRequests.at(-1).headers.authorization;
  fake.script = [{ status: 401, body: { type: 'unauthorized', description: 'token revoked' } }];
  const refused = await send();
  assert.equal(refused.status, 401, 'Bandwidth\'s answer passes through');
  assert.equal((await send()).status, 202);
  assert.equal(fake.tokenRequests.length, tokens + 1, 'one new token');
  assert.notEqual(fake.messageRequests.at(-1).headers.authorization, used, 'the refused token is not used again');
});

test('callbacks without configured credentials answer 500 not-configured, and store nothing', async () => {
  const bare = await startWorker({ vars: { CALLBACK_USER: '', CALLBACK_PASSWORD: '', CALLBACK_USER_2: '', CALLBACK_PASSWORD_2: '', BW_ACCOUNT_ID: ACCOUNT } });
  try {
    const id = uniqueId('bare');
    const r = await postCallback(bare.url, [statusEvent(id)]);
    assert.equal(r.status, 500);
    const body = await r.json();
    assert.equal(body.type, 'not-configured');
    assert.match(body.description, /CALLBACK_USER/);
    assert.equal((await getJson(bare.url, `/messages/${id}`)).status, 404);
  } finally {
    await bare.stop();
  }
});

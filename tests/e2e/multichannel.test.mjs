// RCS through Bandwidth's Multi-Channel API, under workerd, against the
// fake Bandwidth (`tests/support/multi-channel.mjs`), which answers the send
// and then posts the callbacks Bandwidth would: per recipient, RBM first and
// SMS when the phone takes no RCS; then read receipts and suggestion replies.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { parse as parseCsv } from 'csv-parse/sync';
import { Configuration, MultiChannelApi } from 'bandwidth-sdk';
import { startWorker, getJson, basic, sha256, waitFor, postCallback, inboundEvent, SECRETS, API } from './harness.mjs';
import { startFakeBandwidth } from '../support/fake-bandwidth.mjs';
import { startReceiver, whsec } from '../support/receiver.mjs';
import { Contract } from '../support/openapi.mjs';

const ACCOUNT = '9900000';
const AGENT = 'BandwidthRBM';
const NUMBER = '+15551110000';
const KEYS = { web: 'mc-web-key-1', smsonly: 'mc-sms-key-2', uk: 'mc-uk-key-3' };
const CLIENT_KEYS = JSON.stringify([
  { id: 'web', key_sha256: sha256(KEYS.web), allowed_from: [NUMBER, AGENT], allowed_origins: ['https://app.example.com'], allowed_applications: ['app-rbm', 'app-sms'], daily_quota: 100 },
  { id: 'smsonly', key_sha256: sha256(KEYS.smsonly), allowed_from: [NUMBER], allowed_applications: ['app-rbm', 'app-sms'] },
  { id: 'uk', key_sha256: sha256(KEYS.uk), allowed_from: [NUMBER, AGENT], allowed_applications: ['app-rbm', 'app-sms'], allowed_destinations: ['+4477'] },
]);

let w;
let fake;
let receiver;
/** The OpenAPI document, which every answer here is held to. */
let contract;
before(async () => {
  fake = await startFakeBandwidth();
  receiver = await startReceiver({ secretOf: whsec });
  w = await startWorker({
    vars: {
      BW_ACCOUNT_ID: ACCOUNT, BW_APPLICATION_ID: 'app-default', CLIENT_KEYS, UPSTREAM_TIMEOUT_MS: '2000',
      BANDWIDTH_API_BASE: `${fake.url}/api/v2`, BANDWIDTH_TOKEN_URL: `${fake.url}/api/v1/oauth2/token`,
      BW_CLIENT_ID: 'client-id', BW_CLIENT_SECRET: 'client-secret',
      FORWARD_TARGETS: JSON.stringify([{ id: 'main', url: `${receiver.url}/main`, secret: whsec('main') }]),
    },
  });
  contract = new Contract(await (await fetch(`${w.url}/openapi.json`)).json());
  fake.multiChannel.callbackUrl = `${w.url}/callbacks/bandwidth`;
  fake.multiChannel.callbackAuth = basic();
});
after(async () => { await w?.stop(); await fake?.close(); receiver?.close(); });
beforeEach(() => { fake.multiChannel.script = []; fake.multiChannel.repeats = 1; });

const rbm = (text = 'Your order shipped', extra = {}) => ({ channel: 'RBM', from: AGENT, applicationId: 'app-rbm', content: { text, ...extra } });
const smsEntry = (text = 'Your order shipped (SMS)') => ({ channel: 'SMS', from: NUMBER, applicationId: 'app-sms', content: { text } });

async function send(body, { key = KEYS.web, headers = {} } = {}) {
  const path = `/api/v2/users/${ACCOUNT}/messages/multiChannel`;
  const r = await fetch(`${w.url}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}`, ...headers },
    body: JSON.stringify(body),
  });
  await contract.checked('POST', path, r.clone());
  return r;
}

/** Sends, and waits until the fake has posted every callback of the send. */
async function sendAndSettle(body, opts) {
  const r = await send(body, opts);
  const text = await r.text();
  assert.equal(r.status, 202, text);
  const { data } = JSON.parse(text);
  assert.ok(await waitFor(() => fake.multiChannel.settled.has(data.id), 15_000), 'the fake posted every callback');
  return data;
}

async function message(id) {
  const path = `/messages/${encodeURIComponent(id)}`;
  const r = await getJson(w.url, path);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  await contract.checked('GET', path, new Response(JSON.stringify(r.json), { status: 200, headers: { 'Content-Type': 'application/json' } }));
  return r.json;
}

async function listRows(query) {
  const path = `/api/v2/users/${ACCOUNT}/messages?${query}`;
  const r = await getJson(w.url, path);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  await contract.checked('GET', path, new Response(JSON.stringify(r.json), { status: 200, headers: { 'Content-Type': 'application/json' } }));
  return r.json;
}

test('an RBM send through the proxy with a client key is recorded; the read receipt sets channel RBM and readTime', async () => {
  fake.multiChannel.rbmCapable.add('+15552220001');
  const before = fake.multiChannel.requests.length;
  const data = await sendAndSettle({ to: '+15552220001', channelList: [rbm(), smsEntry()], tag: 'order-7' },
    { headers: { Origin: 'https://app.example.com' } });
  // Forwarded as sent, applicationId kept per entry, to Bandwidth's path.
  assert.equal(fake.multiChannel.requests.length, before + 1);
  const up = fake.multiChannel.requests.at(-1);
  assert.equal(up.path, `/api/v2/users/${ACCOUNT}/messages/multiChannel`);
  assert.match(up.headers.authorization, /^Bearer tok-\d+$/);
  assert.deepEqual(JSON.parse(up.body), { to: '+15552220001', channelList: [rbm(), smsEntry()], tag: 'order-7' });

  const readAt = '2026-12-02T10:00:05.123Z';
  await fake.multiChannel.read(data, '+15552220001', readAt);
  const m = await message(data.id);
  assert.equal(m.text, 'Your order shipped', 'the text is there from the send, before any callback carries it');
  assert.deepEqual(m.channelList.map((e) => e.channel), ['RBM', 'SMS']);
  const [r] = m.recipients;
  assert.equal(r.number, '+15552220001');
  assert.equal(r.status, 'read');
  assert.equal(r.channel, 'RBM');
  assert.equal(r.readTime, readAt);
  assert.deepEqual(r.channelHistory.map((a) => [a.channel, a.status]), [['RBM', 'read']]);
  assert.deepEqual(r.flags, [], 'RBM delivery is to the handset, not a network handoff');

  const list = await listRows(`messageId=${data.id}`);
  assert.equal(list.totalCount, 1);
  const [row] = list.messages;
  assert.equal(row.messageStatus, 'DELIVERED', 'read maps to DELIVERED in Bandwidth\'s enum');
  assert.equal(row.channel, 'RBM');
  assert.equal(row.readTime, readAt);
  assert.equal(row.messageType, 'rcs');
  const byChannel = await listRows(`channel=RBM&sourceTn=${AGENT}&destinationTn=%2B15552220001`);
  assert.ok(byChannel.messages.some((x) => x.messageId === data.id));
  assert.equal((await listRows(`channel=SMS&messageId=${data.id}`)).totalCount, 0);
  const bad = await getJson(w.url, `/api/v2/users/${ACCOUNT}/messages?channel=FAX`);
  assert.equal(bad.status, 400);
  assert.match(bad.json.description, /channel/);
});

test('RBM fails and SMS is delivered: channel SMS with the RBM attempt in its history; 2 recipients take different channels', async () => {
  fake.multiChannel.rbmCapable.add('+15552220011');
  const data = await sendAndSettle({ to: ['+15552220011', '+15552220012'], channelList: [rbm('Hi'), smsEntry('Hi by SMS')] });
  const m = await message(data.id);
  const of = (n) => m.recipients.find((r) => r.number === n);
  assert.equal(of('+15552220011').channel, 'RBM');
  assert.equal(of('+15552220011').status, 'delivered');
  const fell = of('+15552220012');
  assert.equal(fell.channel, 'SMS');
  assert.equal(fell.status, 'delivered', 'a failed RBM attempt is not the outcome when SMS delivered');
  assert.deepEqual(fell.flags, [], 'no contradiction: two channels, one outcome each');
  assert.deepEqual(fell.channelHistory.map((a) => [a.channel, a.from, a.status, a.errorCode]),
    [['RBM', AGENT, 'failed', 4770], ['SMS', NUMBER, 'delivered', null]]);
  assert.equal(fell.errorCode, null);

  const list = await listRows(`messageId=${data.id}`);
  assert.deepEqual(list.messages.map((x) => [x.destinationTn, x.channel, x.messageStatus, x.messageType, x.sourceTn]).sort(),
    [['+15552220011', 'RBM', 'DELIVERED', 'rcs', AGENT], ['+15552220012', 'SMS', 'DELIVERED', 'sms', NUMBER]],
    'each row names the sender its channel went out as');
  // One forward outcome per recipient and status, each naming its channel.
  const forwards = await waitFor(() => {
    const f = receiver.seen.filter((s) => s.body?.messageId === data.id && s.body.status === 'delivered' && s.status < 300);
    return f.length === 2 && f;
  });
  assert.ok(forwards, 'both deliveries forwarded');
  assert.deepEqual(forwards.map((f) => [f.body.recipient, f.body.channel, f.body.from]).sort(),
    [['+15552220011', 'RBM', AGENT], ['+15552220012', 'SMS', NUMBER]]);
  assert.ok(!receiver.seen.some((s) => s.body?.messageId === data.id && s.body.status === 'failed'),
    'the RBM failure with SMS still to try is not forwarded as the recipient\'s outcome');

  // Export, NDJSON and CSV, carry the channel.
  const from = new Date(Date.parse(data.time) - 60_000).toISOString();
  const nd = await fetch(`${w.url}/export?from=${from}`, { headers: API });
  const line = (await nd.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((x) => x.messageId === data.id);
  assert.equal(line.recipients.find((r) => r.number === '+15552220012').channel, 'SMS');
  const csv = parseCsv(await (await fetch(`${w.url}/export?from=${from}&format=csv`, { headers: API })).text(), { columns: true });
  assert.deepEqual(csv.filter((x) => x.messageId === data.id).map((x) => [x.to, x.channel, x.from]).sort(),
    [['+15552220011', 'RBM', AGENT], ['+15552220012', 'SMS', NUMBER]]);
});

test('a suggestion reply shows in the original message\'s timeline, in a forward and on /live', async () => {
  fake.multiChannel.rbmCapable.add('+15552220021');
  const data = await sendAndSettle({ to: '+15552220021', channelList: [rbm('Confirm?', { suggestions: [{ type: 'REPLY', text: 'Yes', postbackData: 'eWVz' }] })] });
  const live = await new Promise((resolve, reject) => {
    const ws = new WebSocket(`${w.url.replace('http', 'ws')}/live`, ['bw-ledger', `token.${SECRETS.API_TOKEN}`]);
    const messages = [];
    ws.on('message', (m) => messages.push(JSON.parse(m.toString())));
    ws.on('open', () => resolve({ ws, messages }));
    ws.on('error', reject);
  });
  try {
    const replyId = await fake.multiChannel.suggestion(data, '+15552220021', { text: 'Yes', postbackData: 'eWVz' });
    const m = await message(data.id);
    const reply = m.timeline.find((t) => t.type === 'suggestion-response');
    assert.ok(reply, 'the reply is in the original message\'s timeline');
    assert.equal(reply.replyMessageId, replyId);
    assert.equal(reply.event.message.suggestionResponse.text, 'Yes');
    assert.equal(m.recipients.length, 1, 'the reply adds no recipient to the original');
    assert.equal(m.recipients[0].status, 'delivered');
    assert.equal(m.text, 'Confirm?');

    const own = await message(replyId);
    assert.equal(own.direction, 'in');
    assert.equal(own.pairedMessageId, data.id);
    assert.deepEqual(own.suggestionResponse, { text: 'Yes', postbackData: 'eWVz', pairedMessageId: data.id });
    assert.equal(own.text, 'Yes');
    assert.equal(own.recipients[0].channel, 'RBM');

    const isReply = (doc) => doc?.type === 'message.received' && doc.messageId === replyId;
    const forward = await waitFor(() => receiver.seen.find((s) => isReply(s.body) && s.status < 300));
    assert.ok(forward, 'forwarded as message.received');
    assert.equal(forward.verified, true);
    assert.equal(forward.body.text, 'Yes');
    assert.equal(forward.body.pairedMessageId, data.id);
    assert.deepEqual(forward.body.suggestionResponse, { text: 'Yes', postbackData: 'eWVz', pairedMessageId: data.id });
    assert.equal(forward.body.channel, 'RBM');
    const pushed = await waitFor(() => live.messages.find(isReply));
    assert.ok(pushed, 'pushed on /live');
    assert.equal(pushed.suggestionResponse.postbackData, 'eWVz');
    // Found by the replying number, as the console searches.
    const rows = await listRows(`sourceTn=%2B15552220021&messageDirection=INBOUND&include=content`);
    assert.ok(rows.messages.some((x) => x.messageId === replyId && x.text === 'Yes' && x.channel === 'RBM'));
    assert.equal(forward.body.pairedMessageId, data.id);
    assert.ok(!receiver.seen.some((s) => s.body?.type === 'message.received' && s.body.messageId === data.id),
      'the copy on the original message forwards nothing');
  } finally {
    live.ws.close();
  }
});

test('a location reply is typed and tied the same way', async () => {
  fake.multiChannel.rbmCapable.add('+15552220031');
  const data = await sendAndSettle({ to: '+15552220031', channelList: [rbm('Where are you?')] });
  const id = `${Date.now()}loc${process.pid}`;
  const time = new Date().toISOString();
  await fake.multiChannel.post([{
    time, type: 'requested-location-response', to: AGENT, description: 'Location response received',
    message: {
      id, owner: AGENT, applicationId: 'app-rbm', time, segmentCount: 1, direction: 'in', to: [AGENT],
      from: '+15552220031', channel: 'RBM', pairedMessageId: data.id, locationResponse: { latitude: '37.7749', longitude: '-122.4194' },
    },
  }]);
  const own = await message(id);
  assert.deepEqual(own.locationResponse, { latitude: '37.7749', longitude: '-122.4194' });
  assert.equal(own.pairedMessageId, data.id);
  const m = await message(data.id);
  assert.equal(m.timeline.find((t) => t.type === 'requested-location-response')?.replyMessageId, id);
  const forward = await waitFor(() => receiver.seen.find((s) => s.body?.messageId === id && s.status < 300));
  assert.deepEqual(forward.body.locationResponse, { latitude: '37.7749', longitude: '-122.4194' });
});

test('a key refuses a channelList entry whose from it may not use, with 403, and nothing is sent', async () => {
  const before = fake.multiChannel.requests.length;
  const r = await send({ to: '+15552220041', channelList: [rbm(), smsEntry()] }, { key: KEYS.smsonly });
  assert.equal(r.status, 403);
  const body = await r.json();
  assert.match(body.description, /may not send from BandwidthRBM/);
  assert.equal(fake.multiChannel.requests.length, before, 'nothing reached Bandwidth');
  // The body's rules, per entry, before anything is sent.
  const bad = await send({ to: '+15552220041', channelList: [{ channel: 'FAX', from: NUMBER, content: {} }, { channel: 'SMS', from: NUMBER, content: {} }] });
  assert.equal(bad.status, 400);
  const fields = (await bad.json()).fieldErrors.map((e) => e.fieldName);
  assert.deepEqual(fields, ['channelList[0].channel', 'channelList[1].content']);
  // The key's destination rule holds for the multi-channel `to` too.
  const abroad = await send({ to: '+15552220041', channelList: [rbm()] }, { key: KEYS.uk });
  assert.equal(abroad.status, 403);
  assert.match((await abroad.json()).description, /\+15552220041/);
  // A browser's preflight for the route is answered for the key's origin.
  const pre = await fetch(`${w.url}/api/v2/users/${ACCOUNT}/messages/multiChannel`, {
    method: 'OPTIONS', headers: { Origin: 'https://app.example.com', 'Access-Control-Request-Method': 'POST' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example.com');
  const five = await send({ to: '+15552220041', channelList: [smsEntry(), smsEntry(), smsEntry(), smsEntry(), smsEntry()] });
  assert.equal(five.status, 400);
  assert.equal(fake.multiChannel.requests.length, before, 'still nothing sent');
});

test('someone who texted STOP to the SMS number is not sent a multi-channel message, on any channel', async () => {
  const phone = '+15552220091';
  const stop = await postCallback(w.url, [inboundEvent({ from: phone, to: NUMBER, text: 'STOP' })]);
  assert.equal(stop.status, 200);
  const before = fake.multiChannel.requests.length;
  const r = await send({ to: phone, channelList: [rbm(), smsEntry()] });
  assert.equal(r.status, 403);
  const body = await r.json();
  assert.equal(body.type, 'recipient-opted-out');
  assert.deepEqual(body.numbers, [phone]);
  assert.equal(fake.multiChannel.requests.length, before, 'nothing reached Bandwidth');
});

test('the key\'s limits count recipients once per message, not once per channel entry', async () => {
  const usage = async () => (await getJson(w.url, '/keys')).json.keys.find((k) => k.id === 'web');
  const was = await usage();
  await sendAndSettle({ to: '+15552220051', channelList: [rbm(), smsEntry(), { ...smsEntry(), channel: 'MMS', content: { text: 'x', media: [{ fileUrl: 'https://example.com/a.png' }] } }] });
  const now = await usage();
  assert.equal(now.sendsToday - was.sendsToday, 1);
  assert.equal(now.messagesToday - was.messagesToday, 1, 'one recipient, three channel entries: one message');
});

test('an Idempotency-Key replays the first answer: one upstream call', async () => {
  fake.multiChannel.rbmCapable.add('+15552220101');
  const before = fake.multiChannel.requests.length;
  const body = { to: '+15552220101', channelList: [rbm('Once only')] };
  const headers = { 'Idempotency-Key': `mc-${process.pid}-${Date.now()}` };
  const first = await send(body, { headers });
  const second = await send(body, { headers });
  assert.equal(first.status, 202);
  assert.equal(second.status, 202);
  assert.equal(await second.text(), await first.text());
  assert.equal(fake.multiChannel.requests.length, before + 1);
});

test('Bandwidth\'s multi-channel error envelope reaches the caller unchanged', async () => {
  const envelope = '{"links":[],"data":null,"errors":[{"type":"request-validation","description":"channelList[0].from is not an RBM agent on this account","source":{"field":"channelList[0].from"}}]}';
  fake.multiChannel.script.push({ status: 400, body: envelope });
  const r = await send({ to: '+15552220061', channelList: [rbm()] });
  assert.equal(r.status, 400);
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.equal(await r.text(), envelope);
});

test('callbacks retried 5 times are stored once', async () => {
  fake.multiChannel.rbmCapable.add('+15552220071');
  fake.multiChannel.repeats = 5;
  const data = await sendAndSettle({ to: ['+15552220071', '+15552220072'], channelList: [rbm(), smsEntry()] });
  const posted = fake.multiChannel.posted.filter((p) => p.events[0].message.id === data.id);
  // 71: RBM sending, delivered; 72: RBM sending, failed, SMS sending, delivered.
  assert.equal(posted.length, 6 * 5);
  const m = await message(data.id);
  assert.equal(m.timeline.length, 1 + 6, 'the accepted record and six events, each once');
  assert.equal(m.conflicts.length, 0);
  const forwards = await waitFor(() => {
    const f = receiver.seen.filter((s) => s.body?.messageId === data.id && s.status < 300);
    return f.length >= 4 && f;
  });
  const ids = forwards.map((f) => f.id);
  assert.equal(new Set(ids).size, ids.length, 'no change forwarded twice');
});

test('the Bandwidth Node SDK\'s createMultiChannelMessage works against the proxy by changing its base URL', async () => {
  fake.multiChannel.rbmCapable.add('+15552220081');
  const api = new MultiChannelApi(new Configuration({ username: 'web', password: KEYS.web, basePath: `${w.url}/api/v2` }));
  const { status, data } = await api.createMultiChannelMessage(ACCOUNT, {
    to: '+15552220081', channelList: [rbm('From the SDK'), smsEntry('From the SDK (SMS)')],
  });
  assert.equal(status, 202);
  assert.equal(data.data.channelList[0].owner, AGENT);
  assert.ok(await waitFor(() => fake.multiChannel.settled.has(data.data.id), 15_000));
  const m = await message(data.data.id);
  assert.equal(m.text, 'From the SDK');
  assert.equal(m.recipients[0].channel, 'RBM');
});

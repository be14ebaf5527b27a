// Forwarding: a transactional outbox with signed, retried, replayable
// delivery, checked by a local receiver that verifies signatures with the
// independent `standardwebhooks` implementation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startReceiver, whsec } from '../support/receiver.mjs';
import { startWorker, postCallback, getJson, uniqueId, statusEvent, API, waitFor, inboundEvent } from './harness.mjs';
import { freePort } from '../support/ports.mjs';

/** Every request the receiver saw, and how each target answers (`startReceiver`). */
let received;
let behaviour;
/** Requests target `t` has had. */
const count = (t) => received.filter((r) => r.target === t).length;

let receiver;
let w;
let deadPort;

function targets(url) {
  const t = (id, extra = {}) => ({ id, url: `${url}/${id}`, secret: whsec(id), ...extra });
  return JSON.stringify([
    t('main'),
    t('flaky'),
    t('down'),
    t('statusonly', { events: ['message.status'] }),
    t('hang'),
    { id: 'refused', url: `http://127.0.0.1:${deadPort}/refused`, secret: whsec('refused') },
  ]);
}

const vars = () => ({
  FORWARD_TARGETS: targets(receiver.url),
  FORWARD_RETRY_BASE_MS: '100', FORWARD_RETRY_MAX_MS: '400', FORWARD_GIVE_UP_MS: '2500',
});

before(async () => {
  deadPort = await freePort();
  receiver = await startReceiver({ secretOf: whsec });
  ({ seen: received, behaviour } = receiver);
  behaviour.down = { status: 500 };
  behaviour.hang = { hang: true };
  w = await startWorker({ vars: vars() });
});
after(async () => { await w?.stop(); receiver?.close(); });

const docs = (target, messageId) => received.filter((r) => r.target === target && !r.failed && r.body.messageId === messageId);

const inbound = (id, text) => inboundEvent({ id, text, media: [] });

test('an inbound message is forwarded once, signed per Standard Webhooks, with its content', async () => {
  const id = uniqueId('fwd-in');
  assert.equal((await postCallback(w.url, [inbound(id, 'hello downstream')])).status, 200);
  const got = await waitFor(() => docs('main', id).length === 1 && docs('main', id));
  assert.ok(got, 'delivered');
  const [d] = got;
  assert.equal(d.verified, true, 'signature verified by standardwebhooks');
  assert.equal(d.body.type, 'message.received');
  assert.equal(d.body.version, 1);
  assert.equal(d.body.text, 'hello downstream');
  assert.equal(d.body.webhookId, d.id);
  assert.match(d.id, /^msg_[0-9a-f]{32}$/);
  assert.equal(d.body.event.type, 'message-received', 'the raw Bandwidth event rides along');
  // Settle, then look for what must never come: a second delivery, or any
  // to the statusonly target (which filters inbound messages out).
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(docs('main', id).length, 1, 'forwarded once');
  assert.equal(docs('statusonly', id).length, 0);
});

test('a receiver failing the first attempts gets it eventually, with the same webhook-id', async () => {
  const id = uniqueId('fwd-flaky');
  behaviour.flaky = { failFirst: count('flaky') + 3 };
  await postCallback(w.url, [statusEvent(id, { type: 'message-delivered' })]);
  const ok = await waitFor(() => docs('flaky', id).find((d) => d.body.status === 'delivered'));
  assert.ok(ok, 'eventually delivered');
  const failedIds = received.filter((r) => r.target === 'flaky' && r.failed).map((r) => r.id);
  assert.ok(failedIds.length >= 3);
  assert.ok(failedIds.slice(-3).every((x) => x === ok.id), 'same webhook-id on every attempt');
  assert.equal(ok.verified, true);
});

test('group invalid number: downstream hears exactly one outcome per recipient', async () => {
  const id = uniqueId('fwd-grp');
  const msg = { id, owner: '+15551110000', applicationId: 'app', time: '2026-11-20T16:00:00.000Z', segmentCount: 1, direction: 'out', to: ['+15553330001', '+15553330003'], from: '+15551110000', text: '', media: ['https://example.com/p.jpg'] };
  const ev = (type, to, time, extra = {}) => ({ type, time, description: type, to, message: msg, ...extra });
  await postCallback(w.url, [ev('message-failed', '+15553330003', '2026-11-20T16:00:01.000Z', { errorCode: 4720 })]);
  await postCallback(w.url, [ev('message-delivered', '+15553330003', '2026-11-20T16:00:02.000Z')]);
  await postCallback(w.url, [ev('message-delivered', '+15553330001', '2026-11-20T16:00:02.000Z')]);
  await waitFor(() => docs('main', id).some((d) => d.body.recipient === '+15553330001' && d.body.status === 'delivered'));
  await new Promise((r) => setTimeout(r, 1500)); // settle: a late second outcome would show
  const outcomes = (n) => docs('main', id).filter((d) => d.body.recipient === n && ['delivered', 'failed', 'read'].includes(d.body.status));
  assert.deepEqual(outcomes('+15553330003').map((d) => d.body.status), ['failed']);
  assert.equal(outcomes('+15553330003')[0].body.errorCode, 4720);
  assert.deepEqual(outcomes('+15553330001').map((d) => d.body.status), ['delivered']);
  assert.deepEqual(outcomes('+15553330001')[0].body.flags, ['network-handoff-only']);
  // Per message, changes arrive in order: accepted before delivered for the valid number.
  const seq = docs('main', id).filter((d) => d.body.recipient === '+15553330001').map((d) => d.body.status);
  assert.deepEqual(seq, ['accepted', 'delivered']);
});

test('Bandwidth retrying a callback 5 times produces one forward', async () => {
  const id = uniqueId('fwd-retry');
  const body = JSON.stringify([statusEvent(id, { type: 'message-sent' })]);
  await Promise.all(Array.from({ length: 5 }, () => postCallback(w.url, body)));
  await waitFor(() => docs('main', id).length > 0);
  await new Promise((r) => setTimeout(r, 1500)); // settle: a late duplicate would show
  assert.equal(docs('main', id).length, 1);
  assert.equal(docs('main', id)[0].body.status, 'sent');
  assert.equal(docs('main', id)[0].body.previousStatus, null);
});

test('targets that are down or hang do not hold up a healthy one', async () => {
  const ids = Array.from({ length: 20 }, () => uniqueId('fwd-fast'));
  const t0 = Date.now();
  await postCallback(w.url, ids.map((id) => statusEvent(id, { type: 'message-sent' })));
  const all = await waitFor(() => ids.every((id) => docs('main', id).length === 1), 5000);
  assert.ok(all, 'healthy target got every forward');
  // The scenario happened: 'hang' held deliveries open meanwhile. How fast
  // the healthy target was served is the bench's business, not a test's.
  assert.ok(received.some((r) => r.target === 'hang' && r.held), 'the hanging target held deliveries open');
  const last = Math.max(...ids.map((id) => docs('main', id)[0].at));
  console.log(`20 forwards to the healthy target within ${last - t0} ms while 'down' answers 500, 'refused' refuses and 'hang' never answers`);
});

test('dead-lettered after the (compressed) schedule, listed, and delivered again by replay with the same id', async () => {
  const id = uniqueId('fwd-dead');
  await postCallback(w.url, [statusEvent(id, { type: 'message-failed', errorCode: 4432 })]);
  let item;
  const t0 = Date.now();
  while (!item && Date.now() - t0 < 10000) {
    const r = await getJson(w.url, '/outbox/dead?target=down');
    assert.equal(r.status, 200);
    item = r.json.items.find((i) => i.messageId === id);
    if (!item) await new Promise((res) => setTimeout(res, 200));
  }
  assert.ok(item, 'dead-lettered');
  assert.ok(item.attempts >= 2);
  assert.match(item.lastError, /500/);
  const stats = await getJson(w.url, '/outbox');
  const down = stats.json.targets.find((t) => t.target === 'down');
  assert.ok(down.dead >= 1);
  // The target recovers; replay by id.
  behaviour.down = {};
  const replay = await fetch(`${w.url}/outbox/replay`, { method: 'POST', headers: { ...API, 'Content-Type': 'application/json' }, body: JSON.stringify({ target: 'down', ids: [item.webhookId] }) });
  assert.equal(replay.status, 200);
  assert.deepEqual(await replay.json(), { replayed: 1 });
  const got = await waitFor(() => docs('down', id).length === 1 && docs('down', id)[0]);
  assert.ok(got, 'replayed delivery arrived');
  assert.equal(got.id, item.webhookId, 'original webhook-id');
  assert.equal(got.verified, true);
  behaviour.down = { status: 500 };
  const bad = await fetch(`${w.url}/outbox/replay`, { method: 'POST', headers: API, body: JSON.stringify({ ids: [item.webhookId] }) });
  assert.equal(bad.status, 400, 'a replay names its target');
  assert.equal((await fetch(`${w.url}/outbox`)).status, 401);
});

test('a runtime restart between storing and delivering: the forward arrives, with no request to wake a shard', async () => {
  // Its own runtime, with a give-up window longer than a kill and restart
  // take on a loaded machine (the shared one dead-letters after 2.5 s).
  const restartVars = { ...vars(), FORWARD_GIVE_UP_MS: '120000' };
  let rt = await startWorker({ vars: restartVars });
  try {
    const id = uniqueId('fwd-restart');
    behaviour.flaky = { status: 503 };
    const failuresBefore = received.filter((r) => r.target === 'flaky' && r.failed).length;
    await postCallback(rt.url, [statusEvent(id, { type: 'message-delivered' })]);
    await waitFor(() => received.filter((r) => r.target === 'flaky' && r.failed).length > failuresBefore, 5000);
    await rt.kill();
    behaviour.flaky = {};
    rt = await startWorker({ persistDir: rt.persistDir, vars: restartVars });
    // Nothing is sent to the Worker after the restart (the harness's own
    // start-up check is GET /healthz, which touches no object): the shard's
    // stored alarm must bring the retry on its own.
    const got = await waitFor(() => docs('flaky', id).find((d) => d.body.status === 'delivered'), 30000);
    assert.ok(got, 'delivered after the restart');
    assert.equal(got.verified, true);
  } finally {
    await rt.stop();
  }
});

test('killed mid-delivery (the target holds the request open): the lease runs out and the same webhook-id is delivered', async () => {
  const restartVars = { ...vars(), FORWARD_GIVE_UP_MS: '120000' };
  let rt = await startWorker({ vars: restartVars });
  try {
    const id = uniqueId('fwd-held');
    behaviour.main = { hang: true };
    const heldBefore = count('main');
    await postCallback(rt.url, [statusEvent(id, { type: 'message-sent' })]);
    // The delivery is open at the receiver, unanswered, when the runtime dies.
    assert.ok(await waitFor(() => count('main') > heldBefore, 10000), 'the delivery reached the target');
    await rt.kill();
    behaviour.main = {};
    rt = await startWorker({ persistDir: rt.persistDir, vars: restartVars });
    // No request wakes the shard; the lease (10 s delivery timeout + 5 s)
    // runs out and the alarm delivers again.
    const held = received.find((r) => r.target === 'main' && r.held && r.messageId === id);
    assert.ok(held, 'the held request was for this message');
    const got = await waitFor(() => docs('main', id).find((d) => d.body.status === 'sent'), 45000);
    assert.ok(got, 'delivered again after the lease ran out');
    assert.equal(got.verified, true);
    assert.equal(got.id, held.id, 'the same webhook-id as the delivery the kill cut');
    // Settle: no second delivery of the same change.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(docs('main', id).filter((d) => d.body.status === 'sent').length, 1);
  } finally {
    behaviour.main = {};
    await rt.stop();
  }
});

test('a shard whose alarm was lost re-arms it when anything wakes it after a restart', async () => {
  // Slow retries, so no delivery is in flight when the alarm is dropped.
  const slow = { ...vars(), FORWARD_RETRY_BASE_MS: '3000', FORWARD_RETRY_MAX_MS: '3000', FORWARD_GIVE_UP_MS: '120000' };
  let rt = await startWorker({ build: 'build-test', vars: slow });
  try {
    const id = uniqueId('fwd-rearm');
    behaviour.flaky = { status: 503 };
    const failuresBefore = received.filter((r) => r.target === 'flaky' && r.failed).length;
    await postCallback(rt.url, [statusEvent(id, { type: 'message-delivered' })]);
    assert.ok(await waitFor(() => received.filter((r) => r.target === 'flaky' && r.failed).length > failuresBefore, 10000));
    // Let the failed attempt be recorded (it sets the next alarm), then lose
    // that alarm as a crash at the wrong moment could, and crash.
    await new Promise((r) => setTimeout(r, 500));
    const drop = await fetch(`${rt.url}/__test/drop-alarm`, { method: 'POST', headers: { ...API, 'Content-Type': 'application/json' }, body: JSON.stringify({ messageId: id }) });
    assert.equal(drop.status, 200, await drop.text());
    await rt.kill();
    behaviour.flaky = {};
    rt = await startWorker({ build: 'build-test', persistDir: rt.persistDir, vars: slow });
    // Any request that reaches the shard wakes it; reading the message does.
    assert.equal((await getJson(rt.url, `/messages/${id}`)).status, 200);
    const got = await waitFor(() => docs('flaky', id).find((d) => d.body.status === 'delivered'), 30000);
    assert.ok(got, 'the woken shard re-armed its alarm and delivered');
  } finally {
    await rt.stop();
  }
});

// Forwarding operations under real workerd: retries on the default schedule
// (across a restart), isolation from a target that hangs, secret rotation,
// bulk replay of everything dead, pruning, bounded replies, and what
// GET /outbox shows about a broken endpoint.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Webhook } from 'standardwebhooks';
import { startReceiver, whsec } from '../support/receiver.mjs';
import { startWorker, postCallback, getJson, uniqueId, statusEvent, API, waitFor } from './harness.mjs';

/** Per-target behaviour and every request seen (`startReceiver`). */
let behaviour;
let seen;
let receiver;

const sent = (target, messageId) => seen.filter((s) => s.target === target && s.body.messageId === messageId);


/** A group message to three recipients, delivered to each. */
function groupMessage(id) {
  const to = ['+15552220001', '+15552220002', '+15552220003'];
  const message = { ...statusEvent(id).message, to };
  return to.map((n) => ({ ...statusEvent(id, { type: 'message-delivered', to: n }), message }));
}

before(async () => {
  receiver = await startReceiver();
  ({ behaviour, seen } = receiver);
});
after(() => { receiver?.close(); });

test('default schedule: every refused first attempt is retried on time, across a restart, with no request to wake it', async () => {
  behaviour.flaky = { failEachFirstAttempt: true };
  const targets = JSON.stringify([{ id: 'flaky', url: `${receiver.url}/flaky`, secret: whsec('flaky') }]);
  let w = await startWorker({ vars: { FORWARD_TARGETS: targets } });
  try {
    const id = uniqueId('default-schedule');
    assert.equal((await postCallback(w.url, groupMessage(id))).status, 200);
    // The first recipient's forward is refused; restart the runtime before
    // its retry is due. Nothing calls the Worker after the restart.
    assert.ok(await waitFor(() => sent('flaky', id).length >= 1, 15000), 'first attempt');
    await w.kill();
    w = await startWorker({ persistDir: w.persistDir, vars: { FORWARD_TARGETS: targets } });
    const restartedAt = Date.now();
    const delivered = () => new Set(sent('flaky', id).filter((s) => s.status === 204).map((s) => s.id)).size;
    assert.ok(await waitFor(() => delivered() === 3, 60000), `all three delivered: ${JSON.stringify(sent('flaky', id).map((s) => [s.id.slice(0, 10), s.attempt, s.status]))}`);
    // Each refusal was retried within the first backoff step (5 s, jittered
    // down to 2.5 s) or, if that fell while the runtime was down, as soon as
    // it was back; plus slack for a loaded machine.
    for (const webhookId of new Set(sent('flaky', id).map((s) => s.id))) {
      const [first, second] = sent('flaky', id).filter((s) => s.id === webhookId);
      assert.equal(first.status, 503);
      assert.equal(second.status, 204);
      const due = Math.max(first.at + 5000, restartedAt);
      assert.ok(second.at - due <= 10000, `retry of ${webhookId} ${second.at - due} ms after it was due (the restart took until ${restartedAt - first.at} ms after the first attempt)`);
    }
  } finally {
    await w.stop();
  }
});

let w;
const TARGETS = () => JSON.stringify([
  { id: 'healthy', url: `${receiver.url}/healthy`, secret: whsec('healthy') },
  { id: 'hang', url: `${receiver.url}/hang`, secret: whsec('hang') },
  { id: 'rotating', url: `${receiver.url}/rotating`, secrets: [whsec('new'), whsec('old')], events: ['message.status'] },
  { id: 'down', url: `${receiver.url}/down`, secret: whsec('down'), events: ['message.status'] },
  { id: 'big', url: `${receiver.url}/big`, secret: whsec('big'), events: ['message.status'] },
]);

test('compressed schedule: start a Worker with a hanging, a rotating, a down and a big-reply target', async () => {
  behaviour.hang = { hang: true };
  behaviour.down = { status: 500 };
  behaviour.big = { bigBody: true };
  w = await startWorker({
    vars: {
      FORWARD_TARGETS: TARGETS(),
      FORWARD_RETRY_BASE_MS: '100', FORWARD_RETRY_MAX_MS: '400', FORWARD_GIVE_UP_MS: '1500',
      FORWARD_KEEP_DELIVERED_MS: '4000',
    },
  });
});

test('a target that never answers does not delay another: 20 forwards reach the healthy one', async () => {
  const ids = Array.from({ length: 20 }, () => uniqueId('isolated'));
  const t0 = Date.now();
  for (const id of ids) assert.equal((await postCallback(w.url, [statusEvent(id)])).status, 200);
  const all = await waitFor(() => ids.every((id) => sent('healthy', id).some((s) => s.status === 204)), 30000);
  assert.ok(all, `healthy got ${ids.filter((id) => sent('healthy', id).length).length} of 20 within 30 s`);
  console.log(`# 20 forwards to the healthy target in ${Date.now() - t0} ms while the other hangs`);
  assert.ok(seen.some((s) => s.target === 'hang'), 'the hanging target was being tried meanwhile');
});

test('rotation: each delivery carries a signature per secret, and either secret verifies it', async () => {
  const id = uniqueId('rotation');
  assert.equal((await postCallback(w.url, [statusEvent(id)])).status, 200);
  const d = await waitFor(() => sent('rotating', id)[0], 15000);
  assert.ok(d, 'delivered');
  assert.equal(d.headers['webhook-signature'].split(' ').length, 2);
  for (const name of ['new', 'old']) {
    const verified = new Webhook(whsec(name)).verify(d.raw, {
      'webhook-id': d.headers['webhook-id'],
      'webhook-timestamp': d.headers['webhook-timestamp'],
      'webhook-signature': d.headers['webhook-signature'],
    });
    assert.equal(verified.messageId, id, `verified with the ${name} secret`);
  }
  assert.throws(() => new Webhook(whsec('other')).verify(d.raw, {
    'webhook-id': d.headers['webhook-id'], 'webhook-timestamp': d.headers['webhook-timestamp'], 'webhook-signature': d.headers['webhook-signature'],
  }), 'a secret not configured does not verify');
});

test('GET /outbox shows a broken endpoint at a glance, and a bulk replay sends every dead item again with its webhook-id', async () => {
  const ids = [uniqueId('dead'), uniqueId('dead'), uniqueId('dead')];
  for (const id of ids) assert.equal((await postCallback(w.url, [statusEvent(id, { type: 'message-failed', errorCode: 4432 })])).status, 200);
  const deadItems = async () => (await getJson(w.url, '/outbox/dead?target=down&limit=1000')).json.items;
  assert.ok(await waitFor(async () => { const items = await deadItems(); return ids.every((id) => items.some((i) => i.messageId === id)); }, 20000), 'dead-lettered');
  const down = (await getJson(w.url, '/outbox')).json.targets.find((t) => t.target === 'down');
  assert.ok(down.dead >= 3);
  assert.match(down.lastError, /answered 500/);
  assert.ok(Date.now() - Date.parse(down.lastErrorAt) < 60000, down.lastErrorAt);
  assert.ok(down.consecutiveFailures >= 3, `consecutive failures ${down.consecutiveFailures}`);
  const healthy = (await getJson(w.url, '/outbox')).json.targets.find((t) => t.target === 'healthy');
  assert.equal(healthy.consecutiveFailures, 0);

  const originals = new Map((await deadItems()).map((i) => [i.webhookId, i.messageId]));
  behaviour.down = {};
  const r = await fetch(`${w.url}/outbox/replay`, { method: 'POST', headers: { ...API, 'Content-Type': 'application/json' }, body: JSON.stringify({ target: 'down' }) });
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { replayed: originals.size });
  const redelivered = () => [...originals.keys()].every((wid) => seen.some((s) => s.target === 'down' && s.id === wid && s.status === 204));
  assert.ok(await waitFor(redelivered, 20000), 'every dead item delivered again, with its original webhook-id');
  assert.deepEqual((await deadItems()).filter((i) => originals.has(i.webhookId)), []);
  const after = (await getJson(w.url, '/outbox')).json.targets.find((t) => t.target === 'down');
  assert.equal(after.consecutiveFailures, 0, 'a success ends the streak');
});

test('a target answering a 10 MiB body is counted delivered on its status, once', async () => {
  const id = uniqueId('big');
  assert.equal((await postCallback(w.url, [statusEvent(id)])).status, 200);
  assert.ok(await waitFor(() => sent('big', id).length >= 1, 15000));
  const big = await waitFor(async () => (await getJson(w.url, '/outbox')).json.targets.find((t) => t.target === 'big' && t.delivered >= 1), 15000);
  assert.ok(big, 'counted as delivered');
  await new Promise((r) => setTimeout(r, 1500)); // settle: a late retry would show
  assert.equal(sent('big', id).length, 1, 'not retried');
  assert.equal((await fetch(`${w.url}/healthz`)).status, 200);
});

test('delivered items are pruned after FORWARD_KEEP_DELIVERED_MS', async () => {
  const delivered = async () => (await getJson(w.url, '/outbox')).json.targets.find((t) => t.target === 'healthy')?.delivered ?? 0;
  // Its own delivery, so the test does not lean on what earlier tests left.
  const id = uniqueId('prune');
  assert.equal((await postCallback(w.url, [statusEvent(id)])).status, 200);
  assert.ok(await waitFor(() => sent('healthy', id).length >= 1, 15000), 'delivered');
  assert.ok(await waitFor(async () => (await delivered()) >= 1, 15000), 'counted as delivered');
  assert.ok(await waitFor(async () => (await delivered()) === 0, 30000), 'pruned (kept 4 s)');
});

test('stop the compressed-schedule Worker', async () => { await w.stop(); });

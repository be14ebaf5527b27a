// Forwarding that says when it is failing: a target's state (active,
// failing, disabled), the circuit breaker while it fails, paused changes
// while it is disabled, and the operational events about it, each step
// surviving a SIGKILL. A local receiver plays the failing target, a
// target that subscribes to the operational events, and a Slack-format
// ALERT_WEBHOOK_URL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startReceiver, verifies, whsec } from '../support/receiver.mjs';
import { Contract } from '../support/openapi.mjs';
import { startWorker, postCallback, getJson, uniqueId, statusEvent, inboundEvent, API, waitFor } from './harness.mjs';

const OPS_EVENTS = ['target.failing', 'target.disabled', 'target.recovered', 'forward.exhausted'];
const SHARDS = 8;
const DISABLE_AFTER_MS = 30_000;
const RETRY_BASE_MS = 400;
let receiver;
let w;
let contract;
const vars = () => ({
  LEDGER_SHARDS: String(SHARDS),
  FORWARD_TARGETS: JSON.stringify([
    // Subscribes to operational events too: it must never get its own.
    { id: 'down', url: `${receiver.url}/down`, secret: whsec('down'), events: ['message.received', 'message.status', ...OPS_EVENTS] },
    { id: 'ops', url: `${receiver.url}/ops`, secret: whsec('ops'), events: OPS_EVENTS },
  ]),
  FORWARD_FAILING_AFTER: '5',
  FORWARD_DISABLE_AFTER_MS: String(DISABLE_AFTER_MS),
  FORWARD_RETRY_BASE_MS: String(RETRY_BASE_MS), FORWARD_RETRY_MAX_MS: '1600', FORWARD_GIVE_UP_MS: '600000',
  ALERT_WEBHOOK_URL: `${receiver.url}/alerts`,
  ALERT_FORMAT: 'slack',
});

before(async () => {
  receiver = await startReceiver();
  w = await startWorker({ vars: vars() });
  contract = new Contract(await (await fetch(`${w.url}/openapi.json`)).json());
});

/** Holds an event document to its schema in the OpenAPI document's `webhooks`. */
function documented(body, schema) {
  const ok = contract.accepts({ $ref: `#/components/schemas/${schema}` }, body);
  assert.ok(ok, `${schema}: ${JSON.stringify(contract.compiled({ $ref: `#/components/schemas/${schema}` }).errors)} in ${JSON.stringify(body)}`);
  for (const [kind, item] of Object.entries(contract.doc.webhooks)) {
    if (kind === body.type || (!body.type && schema === 'SlackAlert')) {
      assert.ok(contract.accepts(item.post.requestBody.content['application/json'].schema, body), `webhooks.${kind}`);
    }
  }
}
after(async () => { await w?.stop(); receiver?.close(); });

const settle = (ms) => new Promise((r) => setTimeout(r, ms));
const target = async (id, worker = w) => {
  const r = await getJson(worker.url, `/targets/${id}`);
  assert.equal(r.status, 200, r.text);
  return r.json;
};
const restart = async () => {
  const { persistDir } = w;
  await w.kill();
  w = await startWorker({ vars: vars(), persistDir });
};
/** The Standard Webhooks documents `to` got about target `about`, of `type`. */
const opsDocs = (to, type, about = 'down') =>
  receiver.seen.filter((r) => r.target === to && r.body?.type === type && r.body?.target === about && !r.failed);
/** The Slack-format alerts whose text says `words`. */
const slack = (words) => receiver.seen.filter((r) => r.target === 'alerts' && r.body?.text?.includes(words));
/** Each webhook id's first 2xx delivery, once (retries answered 2xx are counted by `delivered`). */
const delivered = (to, id) => receiver.seen.filter((r) => r.target === to && r.messageId === id && !r.failed);

const groupBy = (xs, key) => xs.reduce((g, x) => ((g[key(x)] ??= []).push(x), g), {});

/** The shard of a message id (`core/src/shard.rs`: FNV-1a 64 modulo the count). */
function shardOf(id) {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(id)) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return Number(h % BigInt(SHARDS));
}

const messages = [];
/** When `down` started failing (its first failed attempt), as GET /targets said. */
let failingSince;
const inbound = () => {
  const id = uniqueId('alert');
  messages.push(id);
  return inboundEvent({ id, text: `for ${id}` });
};

test('five failures make it failing: one target.failing each, and one probe in flight per shard', async () => {
  receiver.behaviour.down = { status: 503, delayMs: 250 };
  for (let i = 0; i < 16; i++) assert.equal((await postCallback(w.url, [inbound()])).status, 200);
  const failingAt = await waitFor(async () => (await target('down')).state === 'failing' && Date.now(), 20_000);
  assert.ok(failingAt, 'failing within seconds');
  const t = await target('down');
  assert.ok(t.consecutiveFailures >= 5, JSON.stringify(t));
  assert.equal(t.lastError, 'target answered 503');
  assert.ok(Date.parse(t.since) <= failingAt);
  // Many more attempts fail; the incident is told once.
  await settle(5_000);
  assert.ok(receiver.seen.filter((r) => r.target === 'down' && r.at > failingAt).length >= SHARDS / 2, 'still probed');
  const [doc, ...more] = opsDocs('ops', 'target.failing');
  assert.ok(doc, 'the ops target got target.failing');
  assert.equal(more.length, 0, 'exactly one');
  assert.equal(verifies(whsec('ops'), doc.raw, doc.headers), true, 'signed like every forward');
  assert.equal(doc.body.consecutiveFailures >= 5, true);
  assert.equal(doc.body.lastError, 'target answered 503');
  assert.ok(doc.body.firstFailureAt && doc.body.webhookId === doc.headers['webhook-id']);
  documented(doc.body, 'TargetFailingEvent');
  const alerts = slack('is failing');
  assert.equal(alerts.length, 1, 'one Slack alert');
  assert.deepEqual(Object.keys(alerts[0].body), ['text'], 'Slack format: {"text"} only');
  assert.match(alerts[0].body.text, /`down`/);
  documented(alerts[0].body, 'SlackAlert');
  assert.equal(alerts[0].headers['webhook-signature'], undefined, 'unsigned without ALERT_WEBHOOK_SECRET');
  assert.equal(receiver.seen.filter((r) => r.target === 'down' && r.body?.type?.startsWith('target.')).length, 0,
    'never sent to the failing target itself');

  // The breaker: once every shard holds the state (within a second), at most
  // one request per shard is in flight, and a shard probes at most once per
  // step of the retry schedule counted from the first failure (points at
  // +400, +1200, +2800 ms, then every 1600 ms).
  const since = Date.parse(t.since);
  failingSince = since;
  const points = [];
  for (let at = since, n = 1; at < since + 120_000; n++) points.push(at += Math.min(RETRY_BASE_MS * 2 ** (n - 1), 1600));
  const step = (at) => points.filter((p) => p <= at).length;
  const probes = receiver.seen.filter((r) => r.target === 'down' && r.at > failingAt + 1_000);
  const byShard = groupBy(probes, (r) => shardOf(r.messageId));
  const probed = Object.values(byShard).filter((rs) => rs.length >= 2).length;
  assert.ok(probed >= 3, `shards probing more than once: ${probed}`);
  for (const [shard, rs] of Object.entries(byShard)) {
    rs.sort((a, b) => a.at - b.at);
    for (let i = 1; i < rs.length; i++) {
      assert.ok(rs[i - 1].end && rs[i].at >= rs[i - 1].end, `shard ${shard}: one in flight at a time`);
      assert.ok(step(rs[i].at) > step(rs[i - 1].at), `shard ${shard}: one probe per step (${rs.map((r) => r.at - since)})`);
    }
  }
  const hook = await target('alert-webhook');
  assert.deepEqual([hook.source, hook.state, hook.url], ['alert', 'active', `${receiver.url}/…`], 'its path is never shown');
  const metrics = await getJson(w.url, '/metrics');
  assert.match(metrics.text, /bw_ledger_target_state\{target="down",state="failing"\} 1/);
  assert.match(metrics.text, /bw_ledger_target_state\{target="ops",state="active"\} 1/);

  await restart();
  assert.equal((await target('down')).state, 'failing', 'kept across a SIGKILL');
  await settle(2_000);
  assert.equal(opsDocs('ops', 'target.failing').length, 1, 'not told again after the restart');
  assert.equal(slack('is failing').length, 1);
});

test('after the disable window: disabled, one target.disabled; later changes are paused, never attempted, none dead', async () => {
  const disabled = await waitFor(async () => {
    const t = await target('down');
    return t.state === 'disabled' && t;
  }, failingSince + DISABLE_AFTER_MS + 10_000 - Date.now());
  assert.ok(disabled, 'disabled after the window');
  assert.ok(Date.parse(disabled.since) - failingSince >= DISABLE_AFTER_MS, 'not before the window');
  await settle(1_000);
  assert.equal(opsDocs('ops', 'target.disabled').length, 1);
  documented(opsDocs('ops', 'target.disabled')[0].body, 'TargetDisabledEvent');
  assert.equal(slack('is disabled').length, 1);

  const later = [inbound(), inbound()];
  const outbound = uniqueId('alert-out');
  messages.push(outbound);
  for (const ev of later) assert.equal((await postCallback(w.url, [ev])).status, 200);
  for (const type of ['message-sending', 'message-delivered']) {
    assert.equal((await postCallback(w.url, [statusEvent(outbound, { type })])).status, 200);
  }
  const quietFrom = Date.now();
  await settle(2_500);
  const attempts = () => receiver.seen.filter((r) => r.target === 'down' && r.at > quietFrom + 500);
  assert.equal(attempts().length, 0, 'a disabled target gets no attempts');
  let t = await target('down');
  assert.equal(t.dead, 0, 'none is dead');
  assert.equal(t.pending, 0);
  assert.equal(t.paused, messages.length + 1, 'every change held: one per inbound message, two statuses');

  await restart();
  t = await target('down');
  assert.equal(t.state, 'disabled', 'kept across a SIGKILL');
  assert.equal(t.paused, messages.length + 1);
  await settle(2_000);
  assert.equal(attempts().length, 0);
  assert.equal(opsDocs('ops', 'target.disabled').length, 1, 'not told again');
});

test('enable: every paused change arrives once, in order per message; one target.recovered carries the count', async () => {
  receiver.behaviour.down = {};
  const held = (await target('down')).paused;
  const res = await fetch(`${w.url}/targets/down/enable`, { method: 'POST', headers: API });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).state, 'active');
  assert.ok(await waitFor(() => messages.every((id) => delivered('down', id).length > 0), 20_000), 'all drained');
  await settle(1_500);
  const ok = receiver.seen.filter((r) => r.target === 'down' && !r.failed);
  const perId = groupBy(ok, (r) => r.id);
  assert.equal(Object.keys(perId).length, held, 'each held change');
  for (const [id, rs] of Object.entries(perId)) assert.equal(rs.length, 1, `${id} delivered once`);
  const statuses = delivered('down', messages.at(-1)).map((r) => r.body.status);
  assert.deepEqual(statuses, ['sending', 'delivered'], 'in order per message');

  const [doc, ...more] = opsDocs('ops', 'target.recovered');
  assert.ok(doc && more.length === 0, 'one target.recovered');
  assert.equal(doc.body.held, held);
  documented(doc.body, 'TargetRecoveredEvent');
  assert.ok(doc.body.downForMs >= DISABLE_AFTER_MS);
  assert.equal(slack('recovered').length, 1);
  assert.match(slack('recovered')[0].body.text, new RegExp(`${held} held changes`));
  const t = await target('down');
  assert.deepEqual([t.state, t.paused, t.pending, t.dead, t.consecutiveFailures], ['active', 0, 0, 0, 0]);

  await restart();
  assert.equal((await target('down')).state, 'active', 'kept across a SIGKILL');
  const m = inbound();
  await postCallback(w.url, [m]);
  assert.ok(await waitFor(() => delivered('down', messages.at(-1)).length === 1), 'delivered normally');
  assert.equal(opsDocs('ops', 'target.recovered').length, 1, 'not told again');
});

test('an operator disables by hand: paused with no alert; enable sends them with no recovery alert', async () => {
  const alertsBefore = receiver.seen.filter((r) => r.target === 'alerts' || r.target === 'ops').length;
  const off = await fetch(`${w.url}/targets/down/disable`, { method: 'POST', headers: API });
  assert.equal((await off.json()).state, 'disabled');
  const ev = inbound();
  await postCallback(w.url, [ev]);
  await settle(1_000);
  assert.equal((await target('down')).paused, 1);
  assert.equal(delivered('down', messages.at(-1)).length, 0);
  const on = await fetch(`${w.url}/targets/down/enable`, { method: 'POST', headers: API });
  assert.equal((await on.json()).state, 'active');
  assert.ok(await waitFor(() => delivered('down', messages.at(-1)).length === 1));
  await settle(1_000);
  assert.equal(receiver.seen.filter((r) => r.target === 'alerts' || r.target === 'ops').length, alertsBefore);
});

test('dead changes make one forward.exhausted, not one each; a target no longer configured shows as removed', async () => {
  const r2 = await startReceiver();
  const varsOf = (targets) => ({
    FORWARD_TARGETS: JSON.stringify(targets),
    FORWARD_RETRY_BASE_MS: '100', FORWARD_RETRY_MAX_MS: '200', FORWARD_GIVE_UP_MS: '1500',
    FORWARD_FAILING_AFTER: '1000',
  });
  const ops = { id: 'ops', url: `${r2.url}/ops`, secret: whsec('ops'), events: ['forward.exhausted'] };
  const flaky = { id: 'flaky', url: `${r2.url}/flaky`, secret: whsec('flaky'), events: ['message.received'] };
  r2.behaviour.flaky = { status: 500 };
  let w2 = await startWorker({ vars: varsOf([ops, flaky]) });
  try {
    const ids = [];
    for (let i = 0; i < 10; i++) {
      const id = uniqueId('dead');
      ids.push(id);
      await postCallback(w2.url, [inboundEvent({ id })]);
    }
    assert.ok(await waitFor(async () => (await target('flaky', w2)).dead === 10, 20_000), 'all ten dead');
    await settle(3_000);
    const events = r2.seen.filter((r) => r.target === 'ops' && r.body?.type === 'forward.exhausted');
    assert.equal(events.length, 1, 'one event for the first deaths; the rest wait for the minute');
    const [e] = events;
    assert.equal(verifies(whsec('ops'), e.raw, e.headers), true);
    assert.equal(e.body.target, 'flaky');
    documented(e.body, 'ForwardExhaustedEvent');
    assert.ok(e.body.count >= 1 && e.body.count === e.body.changes.length);
    for (const c of e.body.changes) assert.ok(ids.includes(c.messageId) && c.webhookId && c.lastError === 'target answered 500');

    // FORWARD_TARGETS loses `flaky`: removed, not failing; its dead letters can go.
    const { persistDir } = w2;
    await w2.kill();
    w2 = await startWorker({ vars: varsOf([ops]), persistDir });
    const gone = await target('flaky', w2);
    assert.deepEqual([gone.state, gone.source, gone.dead], ['removed', null, 10]);
    assert.match((await getJson(w2.url, '/metrics')).text, /bw_ledger_target_state\{target="flaky",state="removed"\} 1/);
    const discard = await fetch(`${w2.url}/outbox/discard`, {
      method: 'POST', headers: { ...API, 'Content-Type': 'application/json' }, body: JSON.stringify({ target: 'flaky' }),
    });
    assert.deepEqual(await discard.json(), { discarded: 10 });
  } finally {
    await w2.stop();
    r2.close();
  }
});

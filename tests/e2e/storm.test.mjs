// Retry storm: many callbacks across every shard, each sent as 5 copies
// released at the same moment (a barrier per callback), while other
// callbacks are in flight. Every answer is 2xx, and each callback is stored
// exactly once: checked per callback from its own five answers, and in the
// ledger.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, postCallback, statusEvent, getJson } from './harness.mjs';

const CALLBACKS = 600;
const COPIES = 5;
const IN_FLIGHT = 12; // callbacks whose copies race at any moment

test(`${CALLBACKS} callbacks x ${COPIES} copies released together: each stored exactly once`, async () => {
  const w = await startWorker({ vars: { BW_ACCOUNT_ID: '9900000' } });
  try {
    const prefix = `storm-${process.pid}-${Date.now()}`;
    // Two events per callback, so a copy that half-stored would show.
    const bodies = Array.from({ length: CALLBACKS }, (_, i) => JSON.stringify([
      statusEvent(`${prefix}-${i}`, { type: 'message-sent', to: '+15552220001', time: '2026-11-20T15:04:06.000Z' }),
      statusEvent(`${prefix}-${i}`, { type: 'message-delivered', to: '+15552220001' }),
    ]));
    const outcomes = new Array(CALLBACKS);
    let next = 0;
    const lane = async () => {
      while (next < CALLBACKS) {
        const i = next++;
        // The barrier: all copies are created in one tick, before any answer.
        const answers = await Promise.all(Array.from({ length: COPIES }, () => postCallback(w.url, bodies[i])));
        outcomes[i] = await Promise.all(answers.map(async (r) => ({ status: r.status, body: await r.json() })));
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, lane));

    const bad = [];
    for (const [i, copies] of outcomes.entries()) {
      const statuses = copies.map((c) => c.status);
      const stored = copies.reduce((n, c) => n + (c.body.stored ?? 0), 0);
      const duplicates = copies.reduce((n, c) => n + (c.body.duplicates ?? 0), 0);
      if (statuses.some((s) => s !== 200) || stored !== 2 || duplicates !== 2 * (COPIES - 1)) {
        bad.push({ i, statuses, stored, duplicates });
      }
    }
    assert.deepEqual(bad, [], 'per callback: five 200s, its two events stored once, the rest duplicates');
    const list = await getJson(w.url, `/api/v2/users/9900000/messages?limit=1&destinationTn=${encodeURIComponent('+15552220001')}`);
    assert.equal(list.json.totalCount, CALLBACKS, 'one row per message across all shards');
    // Spot-check messages (spread over the shards by their ids): each event once.
    for (const i of [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, CALLBACKS - 1]) {
      const m = await getJson(w.url, `/messages/${prefix}-${i}`);
      assert.deepEqual(m.json.timeline.map((t) => t.type), ['message-sent', 'message-delivered'], `message ${i}`);
    }
  } finally {
    await w.stop();
  }
});

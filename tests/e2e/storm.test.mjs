// Retry storm: 1,000 distinct callbacks, each sent 5 times concurrently
// and interleaved. Every request is answered 2xx; exactly 1,000 events stored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, postCallback, statusEvent, getJson } from './harness.mjs';

test('1,000 callbacks x 5 concurrent retries store exactly 1,000 events', async () => {
  const w = await startWorker({ vars: { BW_ACCOUNT_ID: '9900000' } });
  try {
    const prefix = `storm-${process.pid}`;
    const bodies = Array.from({ length: 1000 }, (_, i) => JSON.stringify([statusEvent(`${prefix}-${i}`, { to: '+15552220001' })]));
    // Interleave: round-robin over the copies so retries of one callback race each other.
    const queue = [];
    for (let copy = 0; copy < 5; copy++) for (let i = 0; i < 1000; i++) queue.push((i * 7 + copy * 131) % 1000);
    let next = 0;
    const statuses = new Map();
    let stored = 0, duplicates = 0;
    const worker = async () => {
      while (next < queue.length) {
        const i = queue[next++];
        const r = await postCallback(w.url, bodies[i]);
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        const b = await r.json();
        stored += b.stored ?? 0;
        duplicates += b.duplicates ?? 0;
      }
    };
    await Promise.all(Array.from({ length: 50 }, worker));
    assert.deepEqual([...statuses.entries()], [[200, 5000]]);
    assert.equal(stored, 1000);
    assert.equal(duplicates, 4000);
    const list = await getJson(w.url, `/api/v2/users/9900000/messages?limit=1&destinationTn=${encodeURIComponent('+15552220001')}`);
    assert.equal(list.json.totalCount, 1000, 'exactly 1,000 rows across all shards');
  } finally {
    await w.stop();
  }
});

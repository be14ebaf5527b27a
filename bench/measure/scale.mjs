// BENCH_ONLY=scale: throughput against the shard count, with every ledger
// shard capped at OBJECT_RPS requests per second (bench/cap-shim.mjs), as
// Cloudflare caps one Durable Object. For each count, a fresh workerd on
// fresh storage (the count is recorded on the first request), a closed loop
// of SCALE_CONNECTIONS concurrent callbacks per shard (a fresh message
// each), then every acknowledged id looked for in List Messages.
//
// The cap is scaled down (3/s rather than Cloudflare's 200 to 500 writing
// requests/s) so that 16 capped shards stay under what this 2-core machine
// can run uncapped: the figures then show the cap and the group sizes, not
// the machine. Callbacks/s = shards × cap × callbacks per object request.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, freePort, loadgen, removeStorage, startWorkerd, writeConfig } from '../workerd.mjs';
import { ACCOUNT, API_TOKEN, AUTH, OBJECT_RPS, OUT, SCALE_CONNECTIONS, SECONDS, log, ms } from '../lib.mjs';

const COUNTS = [1, 2, 4, 8, 16];

/** Every id List Messages holds (each callback here is a fresh message). */
async function listedIds(base) {
  const ids = new Set();
  let token = null;
  do {
    const r = await fetch(`${base}/api/v2/users/${ACCOUNT}/messages?limit=1000&limitTotalCount=false${token ? `&pageToken=${token}` : ''}`, { headers: { Authorization: `Bearer ${API_TOKEN}` } });
    if (!r.ok) throw new Error(`list: ${r.status} ${await r.text()}`);
    const page = await r.json();
    for (const m of page.messages) ids.add(m.messageId);
    token = page.pageInfo.nextPageToken;
  } while (token);
  return ids;
}

async function atShards(shards, vars) {
  const dir = join(OUT, `scale-${shards}`);
  mkdirSync(dir, { recursive: true });
  const storage = join(OUT, `scale-storage-${shards}-${Date.now()}`);
  const ports = { ledger: await freePort(), emptyJs: await freePort(), emptyRust: await freePort() };
  const config = writeConfig(dir, {
    ports, storage, emptyRustBuild: join(ROOT, 'bench/empty-rust/build'), ledgerShim: join(ROOT, 'bench/cap-shim.mjs'),
    vars: { ...vars, LEDGER_SHARDS: String(shards), BENCH_OBJECT_RPS: String(OBJECT_RPS) },
  });
  const wd = await startWorkerd(config, ports.ledger, join(OUT, 'workerd-scale.log'));
  const base = `http://127.0.0.1:${ports.ledger}`;
  try {
    const counts = async () => (await fetch(`${base}/__cap`)).json();
    const laidOut = await (await fetch(`${base}/shards`, { headers: { Authorization: `Bearer ${API_TOKEN}` } })).json();
    if (laidOut.inForce.count !== shards) throw new Error(`GET /shards: ${JSON.stringify(laidOut.inForce)}`);
    const connections = SCALE_CONNECTIONS * shards;
    // Warm up: the first requests compile the Worker and open every shard.
    await loadgen(`127.0.0.1:${ports.ledger}`, ['--auth', AUTH, '--prefix', `scale-warm-${shards}`, '--connections', String(connections), '--duration', '2']);
    const before = await counts();
    const ackedFile = join(OUT, `acked-scale-${shards}.txt`);
    const r = await loadgen(`127.0.0.1:${ports.ledger}`, ['--auth', AUTH, '--prefix', `scale-${shards}`, '--connections', String(connections), '--duration', String(SECONDS), '--acked-file', ackedFile]);
    const after = await counts();
    const acked = readFileSync(ackedFile, 'utf8').split('\n').filter(Boolean);
    const stored = await listedIds(base);
    const missing = acked.filter((id) => !stored.has(id));
    const ingests = after.ingests - before.ingests;
    return {
      shards, connections, rps: r.rps, p50: r.p50_ms, p99: r.p99_ms, non2xx: r.non2xx, errors: r.errors,
      groupSize: r.ok / Math.max(1, ingests), objectRpsPerShard: ingests / r.seconds / shards,
      refused: after.refused - before.refused, acked: acked.length, missing: missing.length,
    };
  } finally {
    await wd.stop();
    removeStorage(storage);
  }
}

export async function measureScale({ results, vars }) {
  log(`# scale: every ledger shard capped at ${OBJECT_RPS} requests/s (bench/cap-shim.mjs), ${SCALE_CONNECTIONS} concurrent callbacks per shard, ${SECONDS} s per count`);
  results.scale = [];
  for (const shards of COUNTS) {
    const s = await atShards(shards, vars);
    results.scale.push(s);
    log(`${String(shards).padStart(2)} shards: ${s.rps.toFixed(0).padStart(5)} callbacks/s  p50 ${ms(s.p50)}  p99 ${ms(s.p99)}  callbacks per object request ${s.groupSize.toFixed(1)}  object requests/s per shard ${s.objectRpsPerShard.toFixed(2)} (cap ${OBJECT_RPS})  non-2xx ${s.non2xx}, errors ${s.errors}, refused by the cap ${s.refused}; acknowledged ${s.acked}, not stored ${s.missing}`);
  }
  const one = results.scale[0].rps;
  log(`scaling (callbacks/s ÷ the 1-shard figure): ${results.scale.map((s) => `${s.shards}: ${(s.rps / one).toFixed(2)}`).join(', ')}`);
  log(`callbacks/s per shard (cap × callbacks per object request): ${results.scale.map((s) => `${s.shards}: ${(s.rps / s.shards).toFixed(1)}`).join(', ')}`);
  if (results.scale.some((s) => s.missing > 0)) process.exitCode = 1;
}

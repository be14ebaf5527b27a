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
//
// Then the count changes 8 → 16 → 12 under steady load, through two gradual
// rollouts (`measureRollout`).
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, freePort, loadgen, removeStorage, startWorkerd, writeConfig, writeRolloutConfig } from '../workerd.mjs';
import { ACCOUNT, API_TOKEN, AUTH, OBJECT_RPS, OUT, SCALE_CONNECTIONS, SECONDS, log, ms } from '../lib.mjs';

const COUNTS = [1, 2, 4, 8, 16];

/** Every id List Messages holds (each callback here is a fresh message);
 * `rows` counts them with repeats (a message stored twice lists twice). */
async function listedIds(base) {
  const ids = new Set();
  ids.rows = 0;
  let token = null;
  do {
    const r = await fetch(`${base}/api/v2/users/${ACCOUNT}/messages?limit=1000&limitTotalCount=false${token ? `&pageToken=${token}` : ''}`, { headers: { Authorization: `Bearer ${API_TOKEN}` } });
    if (!r.ok) throw new Error(`list: ${r.status} ${await r.text()}`);
    const page = await r.json();
    for (const m of page.messages) ids.add(m.messageId);
    ids.rows += page.messages.length;
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
  const r = await measureRollout(vars);
  results.rollout = r;
  log(`rollout 8 → 16 → 12 under load (${r.phases.length} phases of ${ROLLOUT_PHASE_S} s, layouts start ${ROLLOUT_LEAD_MS / 1000} s after a newer version first asks): ${r.rps.toFixed(0)} callbacks/s (${r.groupSize.toFixed(1)} per object request), p50 ${ms(r.p50)}, p99 ${ms(r.p99)} (8 shards alone: p99 ${ms(results.scale.find((s) => s.shards === 8)?.p99)}); non-2xx ${r.non2xx}, errors ${r.errors}; acknowledged ${r.acked}, not stored ${r.missing}, stored twice ${r.duplicates}`);
  for (const p of r.phases) log(`  ${p.name.padEnd(34)} in force ${String(p.inForce).padStart(2)} shards, list rows per shard [${p.rows.join(', ')}]`);
  log(`  layouts recorded: ${r.layouts.join(' → ')}; older versions' counts noted: ${r.requested.join(', ') || 'none'}`);
  if (results.scale.some((s) => s.missing > 0) || r.missing > 0 || r.duplicates > 0) process.exitCode = 1;
}

const ROLLOUT = [8, 16, 12];
const ROLLOUT_PHASE_S = Number(process.env.BENCH_ROLLOUT_PHASE_S ?? 8);
const ROLLOUT_LEAD_MS = 3000;
/** Traffic split between the three versions, phase by phase: a gradual
 * rollout of 16 shards, then of 12. */
const PHASES = [
  ['all traffic on v0 (8 shards)', [1, 0, 0]],
  ['v1 (16) rolling out: half each', [1, 1, 0]],
  ['all traffic on v1 (16)', [0, 1, 0]],
  ['v2 (12) rolling out: half each', [0, 1, 1]],
  ['all traffic on v2 (12)', [0, 0, 1]],
];

/** Changes the count 8 → 16 → 12 under steady load, through two gradual
 * rollouts in one workerd (`writeRolloutConfig`, the test build for a short
 * lead), then looks up every acknowledged id, and counts ids listed twice. */
async function measureRollout(vars) {
  const dir = join(OUT, 'scale-rollout');
  mkdirSync(dir, { recursive: true });
  const storage = join(OUT, `scale-storage-rollout-${Date.now()}`);
  const port = await freePort();
  const t0 = Date.now();
  const config = writeRolloutConfig(dir, {
    port, storage, build: join(ROOT, 'build-test'), shim: join(ROOT, 'bench/cap-shim.mjs'),
    vars: { ...vars, BENCH_OBJECT_RPS: String(OBJECT_RPS), TEST_SHARD_LEAD_MS: String(ROLLOUT_LEAD_MS) },
    versions: ROLLOUT.map((count, i) => ({ vars: { LEDGER_SHARDS: String(count) }, versionMs: t0 + i * 1000 })),
  });
  const wd = await startWorkerd(config, port, join(OUT, 'workerd-rollout.log'));
  const base = `http://127.0.0.1:${port}`;
  const shards = async () => (await fetch(`${base}/shards`, { headers: { Authorization: `Bearer ${API_TOKEN}` } })).json();
  try {
    const connections = SCALE_CONNECTIONS * ROLLOUT[0];
    await loadgen(`127.0.0.1:${port}`, ['--auth', AUTH, '--prefix', 'rollout-warm', '--timed-ids', '--connections', String(connections), '--duration', '2']);
    const counts = async () => (await fetch(`${base}/__cap`)).json();
    const before = await counts();
    const ackedFile = join(OUT, 'acked-rollout.txt');
    const load = loadgen(`127.0.0.1:${port}`, ['--auth', AUTH, '--prefix', 'rollout', '--timed-ids', '--connections', String(connections), '--duration', String(ROLLOUT_PHASE_S * PHASES.length), '--acked-file', ackedFile]);
    const phases = [];
    for (const [name, weights] of PHASES) {
      await fetch(`${base}/__rollout`, { method: 'POST', body: JSON.stringify(weights) });
      await new Promise((r) => setTimeout(r, ROLLOUT_PHASE_S * 1000));
      const seen = await shards();
      phases.push({ name, inForce: seen.inForce.count, rows: seen.shards.map((s) => s.listRows) });
    }
    const r = await load;
    const ingests = (await counts()).ingests - before.ingests;
    const acked = readFileSync(ackedFile, 'utf8').split('\n').filter(Boolean);
    const stored = await listedIds(base);
    const last = await shards();
    return {
      groupSize: r.ok / Math.max(1, ingests), rps: r.rps, p50: r.p50_ms, p99: r.p99_ms, non2xx: r.non2xx, errors: r.errors, acked: acked.length,
      missing: acked.filter((id) => !stored.has(id)).length, phases,
      // Each message here has one recipient: one list row on its shard. A
      // message on two shards is two rows in the shards' own counts.
      duplicates: last.shards.reduce((n, x) => n + x.listRows, 0) - stored.size + (stored.rows - stored.size),
      layouts: last.layouts.map((l) => l.count), requested: last.requested.map((q) => q.count),
    };
  } finally {
    await wd.stop();
    removeStorage(storage);
  }
}

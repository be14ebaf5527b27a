// `node bench/profile.mjs`: a V8 CPU profile of the ledger's isolate under
// full ingest load (plain workerd, like the bench), summarised as self time
// per function, wasm functions by their Rust names: the detail behind the
// phase table of `BENCH_ONLY=profile` (bench/measure/profile.mjs). Run
// `npm run bench` once first so the release Worker and the load generator
// are built. BENCH_SECONDS (default 8) and BENCH_CONNECTIONS (32) apply;
// PROFILE_RATE runs open loop at that many callbacks/s instead of full
// load; PROFILE_STATUSES=1 sends status updates (three callbacks per
// message) instead of a fresh message each; PROFILE_TOP (40) is how many
// rows to print. It also lists the longest stretches of the isolate thread
// busy without a break. The raw profile goes to bench/out/ledger.cpuprofile
// (loadable in Chrome DevTools).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, loadgen as runLoadgen } from './workerd.mjs';
import { busyStretches, inspect, selfTimes, startInspectedWorkerd } from './inspect.mjs';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const TOP = Number(process.env.PROFILE_TOP ?? 40);
const RATE = process.env.PROFILE_RATE;
const OUT = join(ROOT, 'bench/out');
const AUTH = 'Basic ' + Buffer.from('bench:bench-pass').toString('base64');

async function main() {
  mkdirSync(OUT, { recursive: true });
  const vars = { CALLBACK_USER: 'bench', CALLBACK_PASSWORD: 'bench-pass', API_TOKEN: 'bench-api-token', BW_ACCOUNT_ID: '9900000' };
  const { ports, inspector, stop } = await startInspectedWorkerd(OUT, vars);
  try {
    const loadgen = (args) => runLoadgen(`127.0.0.1:${ports.ledger}`, ['--auth', AUTH, '--connections', String(CONNECTIONS), ...(process.env.PROFILE_STATUSES ? ['--statuses'] : []), ...args]);
    await loadgen(['--duration', '2', '--prefix', 'warm']);
    const session = await inspect(inspector, 'ledger');
    const { result: load, profile } = await session.during(() => loadgen(['--duration', String(SECONDS), '--prefix', 'prof', ...(RATE ? ['--rate', RATE] : [])]));
    session.close();
    console.log(`load: ${JSON.stringify(load)}`);
    writeFileSync(join(OUT, 'ledger.cpuprofile'), JSON.stringify(profile));
    const { total, rows } = selfTimes(profile);
    console.log(`self time by function (of ${total.toFixed(0)} ms sampled):`);
    for (const [name, share] of rows.slice(0, TOP)) console.log(`${(share * 100).toFixed(1).padStart(5)}%  ${name}`);
    console.log('longest busy stretches:');
    for (const st of busyStretches(profile)) {
      const top = [...st.self].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([n, t]) => `${n.slice(0, 60)} ${t.toFixed(1)} ms`).join(', ');
      console.log(`  ${st.ms.toFixed(1)} ms: ${top}`);
    }
  } finally {
    await stop();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });

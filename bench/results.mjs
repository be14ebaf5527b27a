// bench/RESULTS.md, from one full run's results.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './workerd.mjs';
import { MIX_MESSAGES, costLine } from './lib.mjs';
import { ingestTargets } from './measure/ingest.mjs';
import { profileTables } from './measure/profile.mjs';

export function writeResults(r) {
  const row = (name, x) => `| ${name} | ${x.rps.toFixed(0)} | ${x.p50_ms.toFixed(2)} | ${x.p99_ms.toFixed(2)} | ${x.cpuMsPerRequest.toFixed(3)} | ${x.non2xx} | ${x.errors} |`;
  const fuzzLine = r.fuzzFailed.length
    ? `**FAILED strategies: ${r.fuzzFailed.join(', ')}** (see the bench output); passed: ${r.fuzz.map((l) => l.replace(/^fuzz /, '')).join('; ') || 'none'}`
    : `${r.fuzzInputs} inputs in all, every strategy passed: ${r.fuzz.map((l) => l.replace(/^fuzz /, '')).join('; ')}`;
  const md = `# Bench results

Latest run of \`npm run bench\` (${r.date}), on this machine: ${r.nproc} cores, ${r.memGiB} GiB.
Every Worker below (and the metered ledger of the cost section) ran in one plain workerd process (no wrangler dev proxy), loaded by
\`bw-ledger-loadgen\` with ${r.connections} keep-alive connections: the empty Workers for ${r.seconds} s each, the ledger and
the hand-written JS peer in alternating rounds (the machine's speed drifts within a minute; each ratio is the median of
the rounds' own ratios, the figures below pool the rounds).

## Targets

| target | this run | target | |
|---|---|---|---|
${ingestTargets(r).map((t) => `| ${t.name} | **${t.shown}** | ${t.target} | ${t.met ? 'met' : '**not met**'} |`).join('\n')}

| run | callbacks/s | p50 ms | p99 ms | workerd CPU ms per callback | non-2xx | errors |
|---|---|---|---|---|---|---|
${row('empty JS Worker (ceiling)', r.emptyJs)}
${row('empty Rust Worker', r.emptyRust)}
${row('hand-written JS peer (one INSERT per callback, 16 shards), a fresh message per callback', r.peer)}
${row('ledger (durable ingest), a fresh message per callback', r.ledger)}
${row('hand-written JS peer, status updates (three callbacks per message)', r.peerStatuses)}
${row('ledger, status updates (three callbacks per message)', r.ledgerStatuses)}
${row('ledger at half its full rate (open loop)', r.ledgerHalf)}
${row('hand-written JS peer at the same rate', r.peerHalf)}
${row('empty JS Worker at the same rate', r.emptyJsHalf)}

Ledger shards: ${r.shards}. Warm-up run (ledger): non-2xx ${r.warm.non2xx}, errors ${r.warm.errors}. Ledger ÷ JS peer in each
round: ${r.ingestRounds}. Ledger / ceiling: ${(r.ratio * 100).toFixed(1)}%; empty Rust / ceiling: ${(r.ratioRust * 100).toFixed(1)}%.

## Where a callback's CPU goes

${profileTables(r.profile).join('\n')}

## What is billed: the realistic mix

${r.cost.callbacks} callbacks: for each of ${MIX_MESSAGES} outbound messages its \`message-sending\`, \`message-sent\` and
\`message-delivered\`, each its own callback, and one inbound \`message-received\` for every three outbound; fresh ids.
Rows are SQLite's own per-statement counts (\`rowsWritten\`, \`rowsRead\` of every cursor of every ledger shard,
added up by \`bench/meter-shim.mjs\` around the same build); non-2xx: ${r.cost.failed}.

- **rows written per callback: ${r.cost.ledger.rowsWrittenPerCallback.toFixed(2)}** (JS peer: ${r.cost.peer.rowsWrittenPerCallback.toFixed(2)}); rows read ${r.cost.ledger.rowsReadPerCallback.toFixed(2)}; SQL statements ${r.cost.ledger.statementsPerCallback.toFixed(2)}; object requests ${r.cost.ledger.objectRequestsPerCallback.toFixed(3)} (shared by group commit).
- Cost per million callbacks at list prices, ledger: ${costLine(r.cost.ledger.cost)}.
- Cost per million callbacks, JS peer: ${costLine(r.cost.peer.cost)}.
- CPU per callback from ${r.cost.cpuSource}; prices: Worker requests $0.30, object requests $0.15, CPU $0.02 per million ms, rows written $1.00, rows read $0.001, per million.

## Other figures

- At half the ledger's full rate (${(r.ledger.rps / 2).toFixed(0)}/s, open loop): ledger p50 ${r.ledgerHalf.p50_ms.toFixed(2)} ms, p99 **${r.ledgerHalf.p99_ms.toFixed(2)} ms** (p99.9 ${r.ledgerHalf.p999_ms.toFixed(2)} ms, max ${r.ledgerHalf.max_ms.toFixed(2)} ms), CPU ${r.ledgerHalf.cpuMsPerRequest.toFixed(3)} ms per callback; hand-written JS peer at the same rate p50 ${r.peerHalf.p50_ms.toFixed(2)} ms, p99 ${r.peerHalf.p99_ms.toFixed(2)} ms, CPU ${r.peerHalf.cpuMsPerRequest.toFixed(3)} ms per callback; ceiling p50 ${r.emptyJsHalf.p50_ms.toFixed(2)} ms, p99 ${r.emptyJsHalf.p99_ms.toFixed(2)} ms.
- Acknowledged ${r.acknowledged} callbacks (ids listed by the load generator), stored ${r.stored} (ids read back through \`GET /export\`): **${r.missing.length} acknowledged but missing**${r.missing.length ? ` (${r.missing.slice(0, 50).join(', ')})` : ''}; ${r.unacknowledgedStored} stored without a 2xx.
- wasm: ${r.wasmRaw} bytes raw, ${r.wasmGzip} bytes gzipped.
- Send proxy, 4 connections: direct to the local fake p50 ${r.sendDirect.p50_ms.toFixed(2)} / p99 ${r.sendDirect.p99_ms.toFixed(2)} ms; through the Worker p50 ${r.sendProxy.p50_ms.toFixed(2)} / p99 ${r.sendProxy.p99_ms.toFixed(2)} ms (added p50 ${(r.sendProxy.p50_ms - r.sendDirect.p50_ms).toFixed(2)} ms); with 1,000 opt-outs in the book p50 ${r.sendProxyOptOuts.p50_ms.toFixed(2)} / p99 ${r.sendProxyOptOuts.p99_ms.toFixed(2)} ms (added p50 ${(r.sendProxyOptOuts.p50_ms - r.sendDirect.p50_ms).toFixed(2)} ms); an operator send with \`optOutOverride\` (the guard, no opt-out check) p50 ${r.sendOverride.p50_ms.toFixed(2)} / p99 ${r.sendOverride.p99_ms.toFixed(2)} ms. For scale, one Worker-to-object round trip with one durable insert (the JS peer, 4 connections): p50 ${r.peerOne.p50_ms.toFixed(2)} / p99 ${r.peerOne.p99_ms.toFixed(2)} ms; a send makes three (the key's guard and the opt-out book at the same time, then the ledger shard).
- List Messages, page of 100 with ${r.listStored} stored messages: first page p50 ${r.listFirst.p50.toFixed(1)} / p99 ${r.listFirst.p99.toFixed(1)} ms; 11th page p50 ${r.listDeep.p50.toFixed(1)} / p99 ${r.listDeep.p99.toFixed(1)} ms; filtered p50 ${r.listFiltered.p50.toFixed(1)} / p99 ${r.listFiltered.p99.toFixed(1)} ms.
- Export (NDJSON, \`GET /export\`) of ${r.export.messages} messages (${r.export.mib.toFixed(0)} MiB): ${r.export.perSecond.toFixed(0)} messages/s; workerd RSS ${r.export.rssBeforeMiB.toFixed(0)} MiB before, peak ${r.export.rssPeakMiB.toFixed(0)} MiB while streaming.
- Live: ${r.liveKiBPerSubscriber.toFixed(1)} KiB of workerd memory per idle subscriber (500 open); callback to subscriber delay with 500 connected p50 ${r.liveDelay.p50.toFixed(1)} / p99 ${r.liveDelay.p99.toFixed(1)} ms.
- Crash-restart under workerd: ${r.crash.kills} SIGKILLs; ${r.crash.attempted} callbacks sent, ${r.crash.acknowledged} acknowledged before their kill, every one sent before a kill sent again after the restart (${r.crash.resent} resends, ${r.crash.resendErrors} non-2xx or errors on the way); **acknowledged before a kill but absent after the restart ${r.crash.lostAcked.length}${r.crash.lostAcked.length ? ` (${r.crash.lostAcked.slice(0, 50).join(', ')})` : ''}; missing after the resends ${r.crash.lost}, duplicated ${r.crash.duplicated}**${r.crash.lost ? ` (${r.crash.missing.slice(0, 50).join(', ')})` : ''}; unacknowledged before the kill and present after the resend: ${r.crash.unackedPresent} of ${r.crash.unacknowledged}.
- Fuzzing (release): ${fuzzLine}.

Command: \`npm run bench\` (environment: BENCH_SECONDS=${r.seconds}, BENCH_CONNECTIONS=${r.connections}).
See [README.md](README.md) for where the time goes and what was decided.
`;
  writeFileSync(join(ROOT, 'bench/RESULTS.md'), md);
}

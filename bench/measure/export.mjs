// Export: every stored message as NDJSON, streamed shard by shard in
// pages; workerd's RSS is sampled while it streams.
import { API_TOKEN, log } from '../lib.mjs';

export async function measureExport({ results, at, ports, rss }, stored) {
  // Export: every stored message as NDJSON, streamed shard by shard in
  // pages; workerd's RSS is sampled while it streams.
  {
    const rssBefore = rss();
    let rssPeak = rssBefore;
    const sampler = setInterval(() => { try { rssPeak = Math.max(rssPeak, rss()); } catch { /* gone */ } }, 200);
    const t0 = performance.now();
    const r = await fetch(`http://${at(ports.ledger)}/export`, { headers: { Authorization: `Bearer ${API_TOKEN}` } });
    let lines = 0;
    let bytes = 0;
    for await (const chunk of r.body) {
      bytes += chunk.length;
      for (const b of chunk) if (b === 10) lines += 1;
    }
    const seconds = (performance.now() - t0) / 1000;
    clearInterval(sampler);
    results.export = { status: r.status, messages: lines, seconds, perSecond: lines / seconds, mib: bytes / 1048576, rssBeforeMiB: rssBefore / 1048576, rssPeakMiB: rssPeak / 1048576 };
    log(`export (NDJSON) of ${lines} messages (${results.export.mib.toFixed(0)} MiB): ${results.export.perSecond.toFixed(0)} messages/s; workerd RSS ${results.export.rssBeforeMiB.toFixed(0)} MiB before, peak ${results.export.rssPeakMiB.toFixed(0)} MiB while streaming`);
    if (r.status !== 200 || lines < stored) process.exitCode = 1;
  }
}

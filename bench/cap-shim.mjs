// Bench only (BENCH_ONLY=scale): the ledger's own build, unchanged, with
// every ledger shard capped at BENCH_OBJECT_RPS requests per second, as
// Cloudflare caps one Durable Object. Requests are admitted one per
// 1000/BENCH_OBJECT_RPS ms, in arrival order; one that would wait longer
// than BENCH_OBJECT_QUEUE_MS is refused at once with 503, as Cloudflare
// answers an overloaded object. GET /__cap answers the shards' ingest
// requests (and refusals), so the run can divide callbacks by object
// requests (group sizes).
import Ledger, * as built from './index.js';

export * from './index.js';

const totals = { ingests: 0, refused: 0 };

export class LedgerShard extends built.LedgerShard {
  constructor(ctx, env) {
    super(ctx, env);
    this.interval = 1000 / Number(env.BENCH_OBJECT_RPS);
    this.queueMs = Number(env.BENCH_OBJECT_QUEUE_MS ?? 2000);
    this.next = 0;
  }

  async fetch(request) {
    const now = Date.now();
    const slot = Math.max(now, this.next);
    if (slot - now > this.queueMs) {
      totals.refused += 1;
      return new Response('Durable Object is overloaded. Too many requests queued.', { status: 503 });
    }
    this.next = slot + this.interval;
    if (new URL(request.url).pathname === '/ingest') totals.ingests += 1;
    if (slot > now) await new Promise((r) => setTimeout(r, slot - now));
    return super.fetch(request);
  }
}

export default class extends Ledger {
  async fetch(request) {
    if (new URL(request.url).pathname === '/__cap') return Response.json(totals);
    return super.fetch(request);
  }
}

// A local webhook receiver for forwarding tests: every request to
// `${url}/<target>` is recorded, and answered as the test sets for that
// target. One meaning for every test that receives forwards.
import { createServer } from 'node:http';
import { Webhook } from 'standardwebhooks';

/**
 * Starts a receiver. `secretOf(target)` (optional) gives a target's signing
 * secret: each request is then checked with the independent
 * `standardwebhooks` verifier (`entry.verified`).
 *
 * `behaviour[target]` sets how a target answers:
 * - `status`: answer this status (default 204);
 * - `failFirst: N`: the target's first N requests get 503;
 * - `failEachFirstAttempt`: each webhook id's first attempt gets 503;
 * - `hang`: never answer (the delivery times out);
 * - `bigBody`: answer 200 with a 10 MiB body;
 * - `delayMs`: answer only after this long (the request stays in flight).
 *
 * Each entry of `seen`: { target, id, at, end (when answered), attempt (of
 * this webhook id), headers, raw, body (parsed, or null), messageId, status,
 * failed, held, verified }.
 */
export async function startReceiver({ secretOf } = {}) {
  const seen = [];
  const behaviour = {};
  const requests = {};
  const srv = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const target = req.url.slice(1);
      const id = req.headers['webhook-id'];
      const raw = Buffer.concat(chunks).toString('utf8');
      let body = null;
      try { body = JSON.parse(raw); } catch { /* not JSON */ }
      requests[target] = (requests[target] ?? 0) + 1;
      const attempt = seen.filter((s) => s.target === target && s.id === id).length + 1;
      const entry = { target, id, at: Date.now(), attempt, headers: req.headers, raw, body, messageId: body?.messageId };
      if (secretOf) entry.verified = verifies(secretOf(target), raw, req.headers);
      seen.push(entry);
      const b = behaviour[target] ?? {};
      if (b.hang) {
        Object.assign(entry, { held: true, failed: true });
        return;
      }
      const failing = (b.failFirst && requests[target] <= b.failFirst) || (b.failEachFirstAttempt && attempt === 1);
      entry.status = failing ? 503 : (b.status ?? 204);
      entry.failed = entry.status >= 300;
      if (b.bigBody) {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        const chunk = Buffer.alloc(1024 * 1024, 'x');
        for (let i = 0; i < 10; i++) res.write(chunk);
        return res.end();
      }
      const answer = () => {
        entry.end = Date.now();
        res.writeHead(entry.status);
        res.end(entry.failed ? 'not now' : '');
      };
      if (b.delayMs) setTimeout(answer, b.delayMs);
      else answer();
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${srv.address().port}`,
    seen,
    behaviour,
    close() {
      srv.closeAllConnections?.();
      srv.close();
    },
  };
}

/** Whether `raw` with these headers verifies with `secret` (Standard Webhooks). */
export function verifies(secret, raw, headers) {
  try {
    new Webhook(secret).verify(raw, {
      'webhook-id': headers['webhook-id'],
      'webhook-timestamp': headers['webhook-timestamp'],
      'webhook-signature': headers['webhook-signature'],
    });
    return true;
  } catch {
    return false;
  }
}

/** A Standard Webhooks secret (`whsec_` and base64), the same for a name every time. */
export function whsec(name) {
  return 'whsec_' + Buffer.from(`secret-for-${name}-0123456789abcdef`).toString('base64');
}

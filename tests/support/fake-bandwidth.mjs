// A local stand-in for Bandwidth's OAuth2 token endpoint, Create Message
// API, Create Multi-Channel Message API (with its callbacks: see
// `fake.multiChannel`) and media downloads, on 127.0.0.1, and a plain media
// host on another origin. Tests script their answers and read back every
// request received.
import { createServer } from 'node:http';
import { MultiChannel } from './multi-channel.mjs';

/**
 * Media files and scripted failures, shared by both fakes. `files` maps a
 * path (as requested) to { body: Buffer, type }; `failures` maps a path to
 * a list of steps taken one per request before the file is served:
 * { status } answers it (with `location`, a redirect), { hang: true }
 * never answers.
 */
function mediaStore() {
  return {
    files: new Map(),
    failures: new Map(),
    requests: [],
    put(path, body, type) { this.files.set(path, { body, type }); },
    /** Bandwidth deleting a file (after 48 hours). */
    delete(path) { this.files.delete(path); },
    /** Requests for one path. */
    requestsFor(path) { return this.requests.filter((r) => r.path === path); },
  };
}

/** Serves a media GET from `store`; `authorized(req)` gates it. */
function serveMedia(store, req, res, authorized) {
  const record = { path: req.url, headers: req.headers, at: Date.now() };
  store.requests.push(record);
  if (!authorized(req)) {
    res.writeHead(401, { 'Content-Type': 'application/json' });
    return res.end(JSON.stringify({ type: 'unauthorized' }));
  }
  const step = store.failures.get(req.url)?.shift();
  if (step?.hang) return; // never answers
  if (step?.status) {
    res.writeHead(step.status, step.location ? { Location: step.location } : {});
    return res.end('not now');
  }
  const file = store.files.get(req.url);
  if (!file) {
    res.writeHead(404, { 'Content-Type': 'application/json' });
    return res.end(JSON.stringify({ type: 'not-found' }));
  }
  res.writeHead(200, { 'Content-Type': file.type, 'Content-Length': file.body.length });
  res.end(file.body);
}

/** A media host on its own origin: serves anyone, records every header. */
export async function startMediaHost() {
  const media = mediaStore();
  const server = createServer((req, res) => serveMedia(media, req, res, () => true));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    media,
    url: `http://127.0.0.1:${server.address().port}`,
    async close() { server.closeAllConnections?.(); await new Promise((r) => server.close(r)); },
  };
}

export async function startFakeBandwidth() {
  const fake = {
    tokenRequests: [],
    messageRequests: [],
    tokenExpiresIn: 3600,
    tokenStatus: 200,
    /** How long the token endpoint takes to answer (a slow one widens races). */
    tokenDelayMs: 0,
    /** Scripted answers for the next message requests; default is 202. */
    script: [],
    /** Media under /api/v2/users/{account}/media/, served only to a bearer
     * token this fake issued (see `mediaStore`). */
    media: mediaStore(),
    /** Message id to use for the next 202s (else a generated one). */
    nextIds: [],
    url: '',
    async close() { await new Promise((r) => server.close(r)); server.closeAllConnections?.(); },
  };
  let tokens = 0;
  let ids = 0;
  const issued = new Set();
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const record = { method: req.method, path: req.url, headers: req.headers, body };
      if (req.method === 'POST' && req.url === '/api/v1/oauth2/token') {
        fake.tokenRequests.push(record);
        if (fake.tokenDelayMs) await new Promise((r) => setTimeout(r, fake.tokenDelayMs));
        if (fake.tokenStatus !== 200) {
          res.writeHead(fake.tokenStatus, { 'Content-Type': 'application/json' });
          return res.end(JSON.stringify({ error: 'invalid_client' }));
        }
        tokens += 1;
        issued.add(`tok-${tokens}`);
        res.writeHead(200, { 'Content-Type': 'application/json' });
        return res.end(JSON.stringify({ access_token: `tok-${tokens}`, token_type: 'Bearer', expires_in: fake.tokenExpiresIn }));
      }
      if (req.method === 'GET' && /^\/api\/v2\/users\/[^/]+\/media\//.test(req.url)) {
        const auth = req.headers.authorization ?? '';
        return serveMedia(fake.media, req, res, () => auth.startsWith('Bearer ') && issued.has(auth.slice(7)));
      }
      if (req.method === 'POST' && /^\/api\/v2\/users\/[^/]+\/messages\/multiChannel$/.test(req.url)) {
        return fake.multiChannel.handle(record, res);
      }
      const m = req.url.match(/^\/api\/v2\/users\/([^/]+)\/messages$/);
      if (req.method === 'POST' && m) {
        fake.messageRequests.push(record);
        // Whether the fake had answered yet, for tests about who gave up first.
        record.answered = false;
        res.on('finish', () => { record.answered = true; });
        const step = fake.script.shift() ?? {};
        if (step.delayMs) await new Promise((r) => setTimeout(r, step.delayMs));
        if (step.destroy) return req.socket.destroy();
        if (step.status) {
          res.writeHead(step.status, { 'Content-Type': 'application/json', ...(step.headers ?? {}) });
          return res.end(JSON.stringify(step.body ?? {}));
        }
        const sent = JSON.parse(body);
        ids += 1;
        const message = {
          id: fake.nextIds.shift() ?? `fake-${process.pid}-${Date.now()}-${ids}`,
          owner: sent.from, applicationId: sent.applicationId, time: new Date().toISOString(),
          segmentCount: 1, direction: 'out', to: sent.to, from: sent.from,
          text: sent.text ?? '', media: sent.media ?? [], tag: sent.tag, priority: sent.priority ?? 'default',
        };
        if (sent.expiration) message.expiration = sent.expiration;
        res.writeHead(202, { 'Content-Type': 'application/json' });
        return res.end(JSON.stringify(message));
      }
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ type: 'not-found', description: `fake has no ${req.method} ${req.url}` }));
    });
  });
  fake.multiChannel = new MultiChannel();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  fake.url = `http://127.0.0.1:${server.address().port}`;
  return fake;
}

// The fake Bandwidth's Multi-Channel side: `POST
// /users/{accountId}/messages/multiChannel` answered in Bandwidth's
// envelope (`{links, data, errors}`), then the callbacks Bandwidth would
// send, posted to `callbackUrl` as Bandwidth posts them: a JSON array,
// first without credentials, and after the `401` challenge with HTTP Basic,
// retried until a 2xx.
//
// Each recipient's channels are tried in `channelList` order: an RBM entry
// fails (error 4770, the phone takes no RCS) unless the recipient is in
// `rbmCapable`; SMS and MMS entries are delivered. `read` and `suggestion`
// send what a phone's user does next.

let ids = 0;
const newId = (kind) => `${Date.now()}${kind}${process.pid}x${++ids}`;

export class MultiChannel {
  constructor() {
    /** Every multi-channel request received ({ method, path, headers, body }). */
    this.requests = [];
    /** Scripted answers for the next requests: { status, body } (else 202). */
    this.script = [];
    /** Recipients whose phones take RCS. */
    this.rbmCapable = new Set();
    /** Where callbacks go, and the Basic credentials after the challenge. */
    this.callbackUrl = null;
    this.callbackAuth = null;
    /** How often each callback is sent (Bandwidth retries: at least once). */
    this.repeats = 1;
    /** Every callback posted: { events, status } per attempt. */
    this.posted = [];
    /** Message ids whose callbacks are all answered 2xx. */
    this.settled = new Set();
    this.clock = Date.now();
  }

  /** Answers one request, and for a 202 sends its callbacks. */
  handle(record, res) {
    this.requests.push(record);
    const step = this.script.shift();
    if (step?.status) {
      res.writeHead(step.status, { 'Content-Type': 'application/json' });
      return res.end(typeof step.body === 'string' ? step.body : JSON.stringify(step.body ?? {}));
    }
    const sent = JSON.parse(record.body);
    const to = Array.isArray(sent.to) ? sent.to : [sent.to];
    const data = {
      id: newId('mc'), time: new Date().toISOString(), direction: 'out', to,
      channelList: sent.channelList.map((e) => ({ ...e, owner: e.from })),
      ...(sent.tag ? { tag: sent.tag } : {}), priority: sent.priority ?? 'default',
      ...(sent.expiration ? { expiration: sent.expiration } : {}),
    };
    res.writeHead(202, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ links: [], data, errors: [] }));
    if (this.callbackUrl) {
      // After the answer, as Bandwidth does.
      setTimeout(() => this.#deliverAll(data).catch((e) => console.error('fake multi-channel callbacks:', e)), 50);
    }
  }

  /** A time for the next event: a second after the last, so order is plain. */
  #tick() {
    this.clock = Math.max(this.clock + 1000, Date.now());
    return new Date(this.clock).toISOString();
  }

  /** A status callback for one recipient on one channel. */
  status(data, recipient, entry, type, extra = {}) {
    const description = { 'message-failed': 'The phone does not take RBM', 'message-read': 'Message read' }[type] ?? 'ok';
    return {
      time: this.#tick(), type, to: recipient, description, ...extra,
      message: {
        id: data.id, owner: entry.from, applicationId: entry.applicationId, time: data.time, segmentCount: 1,
        direction: 'out', to: [recipient], from: entry.from, text: '', ...(data.tag ? { tag: data.tag } : {}),
        priority: data.priority, channel: entry.channel,
      },
    };
  }

  async #deliverAll(data) {
    for (const recipient of data.to) {
      for (const entry of data.channelList) {
        const ok = entry.channel !== 'RBM' || this.rbmCapable.has(recipient);
        await this.post([this.status(data, recipient, entry, 'message-sending')]);
        if (!ok) {
          await this.post([this.status(data, recipient, entry, 'message-failed', { errorCode: 4770 })]);
          continue;
        }
        await this.post([this.status(data, recipient, entry, 'message-delivered')]);
        break;
      }
    }
    this.settled.add(data.id);
  }

  /** `message-read` from `recipient`, read at `eventTime`. */
  read(data, recipient, eventTime = new Date().toISOString()) {
    const entry = data.channelList.find((e) => e.channel === 'RBM');
    return this.post([this.status(data, recipient, entry, 'message-read', { eventTime })]);
  }

  /** The phone `from` taps a suggestion of message `data`; resolves to the reply's message id. */
  async suggestion(data, from, { text, postbackData }) {
    const entry = data.channelList.find((e) => e.channel === 'RBM');
    const id = newId('sug');
    const time = this.#tick();
    await this.post([{
      time, type: 'suggestion-response', to: entry.from, description: 'Suggestion response received',
      message: {
        id, owner: entry.from, applicationId: entry.applicationId, time, segmentCount: 1, direction: 'in',
        to: [entry.from], from, channel: 'RBM', suggestionResponse: { text, postbackData, pairedMessageId: data.id },
      },
    }]);
    return id;
  }

  /** Posts one callback as Bandwidth does, `repeats` times; each until 2xx. */
  async post(events) {
    for (let n = 0; n < this.repeats; n += 1) {
      for (let attempt = 0; ; attempt += 1) {
        const body = JSON.stringify(events);
        let r = await fetch(this.callbackUrl, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
        if (r.status === 401) {
          await r.arrayBuffer();
          r = await fetch(this.callbackUrl, {
            method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: this.callbackAuth }, body,
          });
        }
        await r.arrayBuffer();
        this.posted.push({ events, status: r.status });
        if (r.status >= 200 && r.status < 300) break;
        if (attempt >= 20) throw new Error(`callback refused ${attempt + 1} times: ${r.status}`);
        await new Promise((res) => setTimeout(res, 200));
      }
    }
  }
}

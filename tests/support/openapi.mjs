// The OpenAPI document as a contract a test holds real answers to: which
// operation a request is, whether its status is documented, and whether its
// body matches the documented schema. Shared by the e2e tests that check
// the document (operability, contract).
import assert from 'node:assert/strict';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

export class Contract {
  /** The document `doc` (already parsed). */
  constructor(doc) {
    this.doc = doc;
    this.ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(this.ajv);
    this.validators = new Map();
    /** "METHOD /template STATUS" of every answer checked. */
    this.covered = new Set();
  }

  /** A schema of the document, compiled with the document's components at
   * its root, so its `#/components/schemas/…` references resolve. */
  compiled(schema) {
    if (!this.validators.has(schema)) {
      this.validators.set(schema, this.ajv.compile({ ...schema, components: this.doc.components }));
    }
    return this.validators.get(schema);
  }

  /** Whether `value` is valid for `schema`. */
  accepts(schema, value) {
    return this.compiled(schema)(value);
  }

  resolveRef(x) {
    while (x && x.$ref) x = x.$ref.split('/').slice(1).reduce((o, k) => o[k], this.doc);
    return x;
  }

  /** The template and operation object that serve `method path`, or null. */
  operationOf(method, path) {
    for (const [template, item] of Object.entries(this.doc.paths)) {
      // A parameter is one segment, but the media file's name, the last
      // parameter of its path, spans the rest.
      const pattern = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&')
        .replace(/\{name\}$/, '(.+)').replace(/\{[^}]+\}/g, '([^/]+)');
      if (new RegExp(`^${pattern}$`).test(path) && item[method.toLowerCase()]) {
        return { template, op: item[method.toLowerCase()] };
      }
    }
    return null;
  }

  /** The methods the document declares for the path template `template`. */
  methodsOf(template) {
    const verbs = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
    return Object.keys(this.doc.paths[template]).filter((k) => verbs.includes(k)).map((k) => k.toUpperCase());
  }

  /** Checks a real answer against the document: the route, the status and,
   * for JSON (and NDJSON lines), the body's schema. Answers the body text. */
  async checked(method, path, res, { body } = {}) {
    const url = new URL(path, 'http://x');
    const found = this.operationOf(method, url.pathname);
    assert.ok(found, `${method} ${url.pathname} is not in the document`);
    const response = this.resolveRef(found.op.responses[String(res.status)] ?? found.op.responses.default);
    assert.ok(response, `${method} ${found.template} answered ${res.status}, which the document does not list`);
    this.covered.add(`${method} ${found.template} ${res.status}`);
    const text = body ?? (res.status === 101 ? '' : await res.text());
    const content = response.content;
    if (!content) return text;
    const type = (res.headers.get('content-type') ?? '').split(';')[0].trim();
    const media = content[type] ?? content['*/*'];
    assert.ok(media, `${method} ${found.template} ${res.status}: Content-Type ${type} is not documented (${Object.keys(content)})`);
    const validate = (schema, value, what) => {
      const v = this.compiled(schema);
      assert.ok(v(value), `${what}: ${JSON.stringify(v.errors, null, 1)}\n${JSON.stringify(value).slice(0, 800)}`);
    };
    if (type === 'application/json') {
      validate(media.schema, JSON.parse(text), `${method} ${found.template} ${res.status}`);
    } else if (type === 'application/x-ndjson') {
      for (const line of text.split('\n').filter(Boolean)) validate(media['x-line-schema'], JSON.parse(line), `${found.template} line`);
    }
    return text;
  }
}

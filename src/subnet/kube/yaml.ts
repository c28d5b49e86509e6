/**
 * A small YAML reader for what Kubernetes tooling writes: kubeconfig files
 * and manifests. Block mappings and sequences (a sequence may sit at its
 * key's indentation, as kubectl writes it), plain, single- and double-quoted
 * scalars, literal block scalars (`|`, `|-`), flow collections on one line,
 * comments and `---` document separators. No anchors, tags or multi-line
 * flow. JSON is read as well (YAML's flow subset). Pure.
 */
import { RudderError } from '../../errors';

export type YamlValue = string | number | boolean | null | YamlValue[] | { [k: string]: YamlValue };

interface Line {
  readonly indent: number;
  readonly text: string;
  readonly no: number;
}

function fail(no: number, msg: string): never {
  throw new RudderError('E_CONFIG', `YAML line ${no}: ${msg}`);
}

/** Removes a comment (` #...`) outside quotes. */
function stripComment(s: string): string {
  let q: string | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (q) {
      if (c === '\\' && q === '"') i++;
      else if (c === q) q = null;
    } else if (c === '"' || c === "'") q = c;
    else if (c === '#' && (i === 0 || s[i - 1] === ' ' || s[i - 1] === '\t')) return s.slice(0, i);
  }
  return s;
}

/** Parses every document of a YAML stream (empty documents are skipped). */
export function parseYamlDocuments(text: string): YamlValue[] {
  const docs: string[][] = [[]];
  for (const raw of text.replace(/\r\n/g, '\n').split('\n')) {
    if (/^---(\s|$)/.test(raw)) docs.push([]);
    else if (/^\.\.\.\s*$/.test(raw)) continue;
    else (docs[docs.length - 1] as string[]).push(raw);
  }
  const out: YamlValue[] = [];
  let base = 0;
  for (const d of docs) {
    const v = parseDoc(d, base);
    base += d.length + 1;
    if (v !== undefined) out.push(v);
  }
  return out;
}

/** Parses a single-document YAML (or JSON) text. */
export function parseYaml(text: string): YamlValue {
  const docs = parseYamlDocuments(text);
  if (docs.length > 1) throw new RudderError('E_CONFIG', `expected one YAML document, found ${docs.length}`);
  return docs[0] ?? null;
}

function parseDoc(raw: readonly string[], base: number): YamlValue | undefined {
  const lines: Line[] = raw.map((t, i) => ({ indent: t.length - t.trimStart().length, text: t, no: base + i + 1 }));
  const p = new Parser(lines);
  p.skipBlank();
  if (p.done()) return undefined;
  const v = p.block(p.peek().indent);
  p.skipBlank();
  if (!p.done()) fail(p.peek().no, `unexpected content ${JSON.stringify(p.peek().text.trim())}`);
  return v;
}

class Parser {
  private i = 0;
  constructor(private readonly lines: Line[]) {}

  done(): boolean {
    return this.i >= this.lines.length;
  }
  peek(): Line {
    return this.lines[this.i] as Line;
  }
  skipBlank(): void {
    while (!this.done() && stripComment(this.peek().text).trim() === '') this.i++;
  }

  /** A block node whose lines start at `indent`. */
  block(indent: number): YamlValue {
    this.skipBlank();
    const l = this.peek();
    const t = stripComment(l.text).trim();
    if (t === '-' || t.startsWith('- ')) return this.sequence(indent);
    if (keyOf(t) !== null) return this.mapping(indent);
    this.i++;
    return scalar(t, l.no);
  }

  private sequence(indent: number): YamlValue[] {
    const out: YamlValue[] = [];
    for (;;) {
      this.skipBlank();
      if (this.done()) break;
      const l = this.peek();
      const t = stripComment(l.text).trim();
      if (l.indent !== indent || !(t === '-' || t.startsWith('- '))) break;
      const rest = t.slice(1).trimStart();
      if (rest === '') {
        this.i++;
        this.skipBlank();
        out.push(!this.done() && this.peek().indent > indent ? this.block(this.peek().indent) : null);
        continue;
      }
      // "- key: v" opens a mapping whose further keys sit at the column of "key".
      const inner = l.indent + (t.length - rest.length);
      if (keyOf(rest) !== null || rest === '-' || rest.startsWith('- ')) {
        this.lines[this.i] = { indent: inner, text: ' '.repeat(inner) + rest, no: l.no };
        out.push(this.block(inner));
      } else {
        this.i++;
        out.push(this.valueAfter(rest, l.indent, l.no));
      }
    }
    return out;
  }

  private mapping(indent: number): { [k: string]: YamlValue } {
    const out: { [k: string]: YamlValue } = {};
    for (;;) {
      this.skipBlank();
      if (this.done()) break;
      const l = this.peek();
      if (l.indent !== indent) {
        if (l.indent > indent) fail(l.no, 'unexpected indentation');
        break;
      }
      const t = stripComment(l.text).trim();
      const kv = keyOf(t);
      if (kv === null) break;
      this.i++;
      const [key, rest] = kv;
      if (rest === '') {
        this.skipBlank();
        if (!this.done()) {
          const n = this.peek();
          const nt = stripComment(n.text).trim();
          const seqHere = n.indent === indent && (nt === '-' || nt.startsWith('- '));
          if (n.indent > indent || seqHere) {
            out[key] = this.block(n.indent);
            continue;
          }
        }
        out[key] = null;
      } else out[key] = this.valueAfter(rest, indent, l.no);
    }
    return out;
  }

  /** The value text after "key:" or "- ": a scalar, a flow collection or a block scalar. */
  private valueAfter(rest: string, indent: number, no: number): YamlValue {
    if (rest === '|' || rest === '|-' || rest === '|+' || rest === '>' || rest === '>-') return this.blockScalar(rest, indent);
    return scalar(rest, no);
  }

  private blockScalar(style: string, indent: number): string {
    const body: string[] = [];
    let at = -1;
    while (!this.done()) {
      const l = this.peek();
      if (l.text.trim() === '') {
        body.push('');
        this.i++;
        continue;
      }
      if (at < 0) at = l.indent;
      if (l.indent < at || l.indent <= indent) break;
      body.push(l.text.slice(at));
      this.i++;
    }
    while (body.length && body[body.length - 1] === '') body.pop();
    const text = style.startsWith('>') ? body.join(' ') : body.join('\n');
    return style.endsWith('-') ? text : text + '\n';
  }
}

/** "key: rest" → [key, rest]; null if the line is not a mapping entry. */
function keyOf(t: string): [string, string] | null {
  let key: string;
  let after: string;
  if (t.startsWith('"') || t.startsWith("'")) {
    const end = closingQuote(t);
    if (end < 0) return null;
    const q = scalar(t.slice(0, end + 1), 0);
    key = typeof q === 'string' ? q : JSON.stringify(q);
    after = t.slice(end + 1);
    if (!after.startsWith(':')) return null;
  } else {
    if (t.startsWith('{') || t.startsWith('[')) return null;
    const m = /^([^\s:][^:]*?|[^\s:]*:[^\s][^:]*?)\s*:(\s|$)/.exec(t);
    if (!m) return null;
    key = m[1] as string;
    after = t.slice(m[1]!.length).trimStart();
  }
  return [key, after.slice(1).trim()];
}

function closingQuote(t: string): number {
  const q = t[0];
  for (let i = 1; i < t.length; i++) {
    if (q === '"' && t[i] === '\\') i++;
    else if (t[i] === q) {
      if (q === "'" && t[i + 1] === "'") i++;
      else return i;
    }
  }
  return -1;
}

function scalar(t: string, no: number): YamlValue {
  if (t.startsWith('"')) {
    if (closingQuote(t) !== t.length - 1) fail(no, `unterminated or trailing text after ${t}`);
    try {
      return JSON.parse(t) as string;
    } catch {
      fail(no, `bad double-quoted string ${t}`);
    }
  }
  if (t.startsWith("'")) {
    if (closingQuote(t) !== t.length - 1) fail(no, `unterminated or trailing text after ${t}`);
    return t.slice(1, -1).replace(/''/g, "'");
  }
  if (t.startsWith('[') || t.startsWith('{')) return flow(t, no);
  if (t === 'null' || t === '~' || t === '') return null;
  if (t === 'true' || t === 'True') return true;
  if (t === 'false' || t === 'False') return false;
  if (/^-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?$/.test(t)) return Number(t);
  return t;
}

/** One-line flow collection: JSON, or YAML's unquoted form ([a, b], {k: v}). */
function flow(t: string, no: number): YamlValue {
  try {
    return JSON.parse(t) as YamlValue;
  } catch {
    /* YAML flow with plain scalars */
  }
  let i = 0;
  const ws = (): void => {
    while (t[i] === ' ') i++;
  };
  const item = (stop: string): YamlValue => {
    ws();
    if (t[i] === '[' || t[i] === '{') return node();
    const start = i;
    if (t[i] === '"' || t[i] === "'") {
      const end = closingQuote(t.slice(i));
      if (end < 0) fail(no, `unterminated string in ${t}`);
      i += end + 1;
      return scalar(t.slice(start, i), no);
    }
    while (i < t.length && !stop.includes(t[i] as string)) i++;
    return scalar(t.slice(start, i).trim(), no);
  };
  const node = (): YamlValue => {
    const open = t[i++];
    if (open === '[') {
      const a: YamlValue[] = [];
      ws();
      if (t[i] === ']') return i++, a;
      for (;;) {
        a.push(item(',]'));
        ws();
        const c = t[i++];
        if (c === ']') return a;
        if (c !== ',') fail(no, `bad flow sequence ${t}`);
      }
    }
    const o: { [k: string]: YamlValue } = {};
    ws();
    if (t[i] === '}') return i++, o;
    for (;;) {
      const k = item(':,}');
      if (t[i++] !== ':') fail(no, `bad flow mapping ${t}`);
      o[typeof k === 'string' ? k : JSON.stringify(k)] = item(',}');
      ws();
      const c = t[i++];
      if (c === '}') return o;
      if (c !== ',') fail(no, `bad flow mapping ${t}`);
    }
  };
  const v = node();
  ws();
  if (i !== t.length) fail(no, `trailing text after ${t}`);
  return v;
}

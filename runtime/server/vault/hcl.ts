// A small HCL parser for the subset policies and server config use: attributes (`a = value`),
// blocks with string labels (`path "secret/*" { ... }`), strings, numbers, booleans, lists, objects
// and comments (#, //, /* */). Heredocs and expressions are not supported and are reported by line.
export type HclValue = string | number | boolean | HclValue[] | { [k: string]: HclValue };
export interface HclBlock {
  type: string;
  labels: string[];
  body: HclBody;
  line: number;
}
export interface HclBody {
  attrs: Record<string, HclValue>;
  blocks: HclBlock[];
}

export class HclError extends Error {
  override name = "HclError";
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(`line ${line}: ${message}`);
  }
}

type Tok = { t: "ident" | "str" | "num" | "punct"; v: string; line: number };

function lex(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0,
    line = 1;
  while (i < src.length) {
    const c = src[i];
    if (c === "\n") {
      line++;
      i++;
      continue;
    }
    if (c === " " || c === "\t" || c === "\r" || c === ",") {
      if (c === ",") out.push({ t: "punct", v: ",", line });
      i++;
      continue;
    }
    if (c === "#" || (c === "/" && src[i + 1] === "/")) {
      while (i < src.length && src[i] !== "\n") i++;
      continue;
    }
    if (c === "/" && src[i + 1] === "*") {
      const end = src.indexOf("*/", i + 2);
      if (end === -1) throw new HclError("unterminated /* comment", line);
      line += src.slice(i, end).split("\n").length - 1;
      i = end + 2;
      continue;
    }
    if (c === '"') {
      let s = "";
      i++;
      while (i < src.length && src[i] !== '"') {
        if (src[i] === "\n") throw new HclError("newline in string", line);
        if (src[i] === "\\") {
          const e = src[i + 1];
          const map: Record<string, string> = { n: "\n", t: "\t", r: "\r", '"': '"', "\\": "\\" };
          if (e === "u") {
            s += String.fromCharCode(parseInt(src.slice(i + 2, i + 6), 16));
            i += 6;
            continue;
          }
          if (!(e in map)) throw new HclError(`unknown escape \\${e}`, line);
          s += map[e];
          i += 2;
          continue;
        }
        s += src[i++];
      }
      if (i >= src.length) throw new HclError("unterminated string", line);
      i++;
      out.push({ t: "str", v: s, line });
      continue;
    }
    if (/[-0-9]/.test(c)) {
      const m = /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?/.exec(src.slice(i));
      if (!m) throw new HclError(`unexpected '${c}'`, line);
      out.push({ t: "num", v: m[0], line });
      i += m[0].length;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_\-.]*/.exec(src.slice(i))!;
      out.push({ t: "ident", v: m[0], line });
      i += m[0].length;
      continue;
    }
    if ("{}[]=:".includes(c)) {
      out.push({ t: "punct", v: c, line });
      i++;
      continue;
    }
    if (c === "<" && src[i + 1] === "<") throw new HclError("heredoc strings are not supported", line);
    throw new HclError(`unexpected character '${c}'`, line);
  }
  return out;
}

class Parser {
  private i = 0;
  constructor(private readonly toks: Tok[]) {}
  private peek(): Tok | undefined {
    return this.toks[this.i];
  }
  private lastLine(): number {
    return this.toks[Math.min(this.i, this.toks.length - 1)]?.line ?? 1;
  }
  private next(): Tok {
    const t = this.toks[this.i++];
    if (!t) throw new HclError("unexpected end of input", this.lastLine());
    return t;
  }
  private expect(v: string): void {
    const t = this.next();
    if (t.t !== "punct" || t.v !== v) throw new HclError(`expected '${v}', found '${t.v}'`, t.line);
  }
  private skipCommas() {
    while (this.peek()?.t === "punct" && this.peek()!.v === ",") this.i++;
  }

  body(closing?: string): HclBody {
    const body: HclBody = { attrs: {}, blocks: [] };
    for (;;) {
      this.skipCommas();
      const t = this.peek();
      if (!t) {
        if (closing) throw new HclError(`missing '${closing}'`, this.lastLine());
        return body;
      }
      if (closing && t.t === "punct" && t.v === closing) {
        this.i++;
        return body;
      }
      if (t.t !== "ident" && t.t !== "str")
        throw new HclError(`expected an attribute or block name, found '${t.v}'`, t.line);
      this.i++;
      const n = this.peek();
      if (n?.t === "punct" && (n.v === "=" || n.v === ":")) {
        this.i++;
        body.attrs[t.v] = this.value();
        continue;
      }
      const labels: string[] = [];
      while (this.peek()?.t === "str" || this.peek()?.t === "ident") labels.push(this.next().v);
      this.expect("{");
      body.blocks.push({ type: t.v, labels, body: this.body("}"), line: t.line });
    }
  }

  value(): HclValue {
    const t = this.next();
    if (t.t === "str") return t.v;
    if (t.t === "num") return Number(t.v);
    if (t.t === "ident") {
      if (t.v === "true") return true;
      if (t.v === "false") return false;
      throw new HclError(`unsupported expression '${t.v}' (quote strings)`, t.line);
    }
    if (t.v === "[") {
      const out: HclValue[] = [];
      for (;;) {
        this.skipCommas();
        const p = this.peek();
        if (p?.t === "punct" && p.v === "]") {
          this.i++;
          return out;
        }
        out.push(this.value());
      }
    }
    if (t.v === "{") {
      const b = this.body("}");
      const obj: Record<string, HclValue> = { ...b.attrs };
      for (const blk of b.blocks) obj[blk.type] = blockToObject(blk);
      return obj;
    }
    throw new HclError(`unexpected '${t.v}'`, t.line);
  }
}

function blockToObject(b: HclBlock): HclValue {
  const inner: Record<string, HclValue> = { ...b.body.attrs };
  for (const c of b.body.blocks) inner[c.type] = blockToObject(c);
  return inner;
}

export function parseHcl(src: string): HclBody {
  return new Parser(lex(src)).body();
}

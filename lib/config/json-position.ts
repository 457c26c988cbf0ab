/**
 * Where JSON that does not parse goes wrong, as `line L, column C: what`: the parser's own error says neither. A
 * small scanner of the JSON grammar (RFC 8259), run only on text `JSON.parse` refused.
 *
 * @module
 */

/**
 * The line, column and reason of the first error in `text`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { describeSyntaxError } from "./json-position.ts";
 * assert.equal(describeSyntaxError('{\n  "offline": tru\n}'), 'line 2, column 14: unexpected "t"');
 * ```
 */
export function describeSyntaxError(text: string): string {
  const scanner = new Scanner(text);
  let reason = "it does not parse";
  try {
    scanner.value();
    scanner.space();
    if (scanner.at < text.length) throw new SyntaxError("text after the end of the value");
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    reason = error.message;
  }
  const before = text.slice(0, scanner.at).split("\n");
  return `line ${before.length}, column ${before.at(-1)!.length + 1}: ${reason}`;
}

/** A position in the text and the grammar's rules from there; each rule throws a `SyntaxError` where it fails. */
class Scanner {
  readonly #text: string;
  at = 0;

  constructor(text: string) {
    this.#text = text;
  }

  space(): void {
    while (this.at < this.#text.length && " \t\n\r".includes(this.#text[this.at]!)) this.at++;
  }

  value(): void {
    this.space();
    const char = this.#text[this.at];
    if (char === "{" || char === "[") {
      this.#container(char === "{");
      return;
    }
    if (char === '"') {
      this.#string();
      return;
    }
    const literal = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y;
    literal.lastIndex = this.at;
    if (literal.exec(this.#text) === null)
      throw new SyntaxError(char === undefined ? "the file ends too early" : `unexpected "${char}"`);
    this.at = literal.lastIndex;
  }

  #container(object: boolean): void {
    const close = object ? "}" : "]";
    this.at++;
    this.space();
    if (this.#text[this.at] === close) {
      this.at++;
      return;
    }
    for (;;) {
      if (object) {
        this.space();
        if (this.#text[this.at] !== '"') throw new SyntaxError("expected a key in double quotes");
        this.#string();
        this.#expect(":", '":"');
      }
      this.value();
      this.space();
      if (this.#text[this.at] !== ",") {
        this.#expect(close, `"," or "${close}"`);
        return;
      }
      this.at++;
    }
  }

  #string(): void {
    this.at++;
    for (;;) {
      const char = this.#text[this.at];
      if (char === undefined) throw new SyntaxError("a string is not closed");
      if (char === '"') return void this.at++;
      if (char < " ") throw new SyntaxError("a control character in a string");
      if (char === "\\") this.#escape();
      this.at++;
    }
  }

  #escape(): void {
    this.at++;
    const unicode = this.#text[this.at] === "u";
    const valid = unicode
      ? /^[0-9a-fA-F]{4}$/.test(this.#text.slice(this.at + 1, this.at + 5))
      : '"\\/bfnrt'.includes(this.#text[this.at] ?? "x");
    if (!valid) throw new SyntaxError("a bad escape in a string");
    if (unicode) this.at += 4;
  }

  #expect(char: string, what: string): void {
    this.space();
    if (this.#text[this.at] !== char) throw new SyntaxError(`expected ${what}`);
    this.at++;
  }
}

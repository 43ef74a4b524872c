// Finds the first syntax error of a JSON text with its offset, for messages that say where the
// problem is (JSON.parse does not always tell). Only called after JSON.parse has failed.

export interface JsonSyntaxError {
  offset: number;
  message: string;
}

class Fail {
  readonly offset: number;
  readonly message: string;
  constructor(offset: number, message: string) {
    this.offset = offset;
    this.message = message;
  }
}

const MAX_DEPTH = 512;

export function findJsonError(text: string): JsonSyntaxError | undefined {
  let i = 0;
  const fail = (message: string, at = i): never => {
    throw new Fail(at, message);
  };
  const describe = (at: number) => (at >= text.length ? 'the end of the text' : JSON.stringify(text[at]));
  const space = () => {
    for (;;) {
      const c = text[i];
      if (c === ' ' || c === '\t' || c === '\n' || c === '\r') i += 1;
      else if (c === '/' && (text[i + 1] === '/' || text[i + 1] === '*')) fail('comments are not allowed in JSON');
      else return;
    }
  };
  const string = () => {
    const start = i;
    i += 1;
    for (;;) {
      const c = text[i];
      if (c === undefined || c === '\n') fail('unterminated string', start);
      if (c === '"') {
        i += 1;
        return;
      }
      if (c! < ' ') fail('control characters must be escaped in JSON strings');
      if (c === '\\') {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) fail('invalid \\u escape');
          i += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) fail(`invalid escape \\${e ?? ''}`);
        i += 2;
        continue;
      }
      i += 1;
    }
  };
  const value = (depth: number): void => {
    if (depth > MAX_DEPTH) fail('the document is nested too deeply');
    space();
    const c = text[i];
    if (c === '{') {
      i += 1;
      space();
      if (text[i] === '}') {
        i += 1;
        return;
      }
      for (let comma = -1; ; ) {
        space();
        if (text[i] === '}') fail('trailing comma before "}"', comma);
        if (text[i] !== '"') fail(`expected a property name in double quotes, found ${describe(i)}`);
        string();
        space();
        if (text[i] !== ':') fail(`expected ":" after the property name, found ${describe(i)}`);
        i += 1;
        value(depth + 1);
        space();
        if (text[i] === ',') {
          comma = i;
          i += 1;
          continue;
        }
        if (text[i] === '}') {
          i += 1;
          return;
        }
        fail(`expected "," or "}" after a property value, found ${describe(i)}`);
      }
    }
    if (c === '[') {
      i += 1;
      space();
      if (text[i] === ']') {
        i += 1;
        return;
      }
      for (let comma = -1; ; ) {
        space();
        if (text[i] === ']') fail('trailing comma before "]"', comma);
        value(depth + 1);
        space();
        if (text[i] === ',') {
          comma = i;
          i += 1;
          continue;
        }
        if (text[i] === ']') {
          i += 1;
          return;
        }
        fail(`expected "," or "]" after an array item, found ${describe(i)}`);
      }
    }
    if (c === '"') return string();
    const number = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (number) {
      i += number[0].length;
      return;
    }
    for (const word of ['true', 'false', 'null']) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return;
      }
    }
    if (c === "'") fail('strings must use double quotes in JSON');
    fail(c === undefined ? 'unexpected end of the text: a value is missing' : `expected a value, found ${describe(i)}`);
  };
  try {
    value(0);
    space();
    if (i < text.length) fail(`unexpected ${describe(i)} after the end of the document`);
    return undefined;
  } catch (error) {
    if (error instanceof Fail) return { offset: error.offset, message: error.message };
    return undefined; // e.g. a stack overflow on absurd nesting: the caller falls back
  }
}

// A tiny XML well-formedness checker for the SVG tests (no dependencies): an optional declaration,
// one root element, matched tags, quoted and unique attributes, only the five predefined entities
// or character references, no raw '<' or '&' in text or attribute values. Returns the elements in
// document order (name + attributes) so tests can count them.

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  /** Concatenated direct text (entities decoded). */
  text: string;
}

const NAME_START = (c: string) => /[A-Za-z_:]/.test(c);
const NAME_CHAR = (c: string) => /[A-Za-z0-9_:.-]/.test(c);
const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

export function parseXml(src: string): XmlElement[] {
  let i = 0;
  const fail = (msg: string): never => {
    const line = src.slice(0, i).split('\n').length;
    throw new Error(`XML error at line ${line} (offset ${i}): ${msg}`);
  };
  const decode = (s: string): string => {
    let out = '';
    for (let k = 0; k < s.length; k++) {
      const c = s[k];
      if (c === '<') fail('raw "<" in text or attribute');
      if (c !== '&') { out += c; continue; }
      const end = s.indexOf(';', k);
      if (end < 0) fail('unterminated entity');
      const name = s.slice(k + 1, end);
      if (name.startsWith('#x')) out += String.fromCodePoint(parseInt(name.slice(2), 16));
      else if (name.startsWith('#')) out += String.fromCodePoint(parseInt(name.slice(1), 10));
      else if (name in ENTITIES) out += ENTITIES[name];
      else fail(`unknown entity &${name};`);
      k = end;
    }
    return out;
  };
  const readName = (): string => {
    if (!NAME_START(src[i] ?? '')) fail(`expected a name, got ${JSON.stringify(src[i])}`);
    const s = i;
    while (i < src.length && NAME_CHAR(src[i])) i++;
    return src.slice(s, i);
  };
  const skipWs = () => { while (i < src.length && ' \t\r\n'.includes(src[i])) i++; };

  if (src.startsWith('<?xml')) {
    const end = src.indexOf('?>');
    if (end < 0) fail('unterminated declaration');
    i = end + 2;
  }
  const elements: XmlElement[] = [];
  const stack: XmlElement[] = [];
  let roots = 0;
  while (i < src.length) {
    if (src[i] !== '<') {
      const next = src.indexOf('<', i);
      const chunk = src.slice(i, next < 0 ? src.length : next);
      const txt = decode(chunk);
      if (stack.length === 0 && txt.trim() !== '') fail('text outside the root element');
      if (stack.length > 0) stack[stack.length - 1].text += txt;
      i = next < 0 ? src.length : next;
      continue;
    }
    if (src.startsWith('<!--', i)) {
      const end = src.indexOf('-->', i);
      if (end < 0) fail('unterminated comment');
      i = end + 3;
      continue;
    }
    if (src[i + 1] === '/') {
      i += 2;
      const name = readName();
      skipWs();
      if (src[i] !== '>') fail('expected ">" after a closing tag name');
      i++;
      const open = stack.pop();
      if (!open) fail(`closing </${name}> without an open element`);
      if (open!.name !== name) fail(`</${name}> closes <${open!.name}>`);
      continue;
    }
    i++;
    const atTop = stack.length === 0;
    const name = readName();
    const el: XmlElement = { name, attrs: {}, text: '' };
    for (;;) {
      const before = i;
      skipWs();
      if (src[i] === '/' && src[i + 1] === '>') { i += 2; break; }
      if (src[i] === '>') { i++; stack.push(el); break; }
      if (i === before) fail(`expected whitespace before an attribute in <${name}>`);
      const an = readName();
      skipWs();
      if (src[i] !== '=') fail(`attribute ${an} of <${name}> has no value`);
      i++;
      skipWs();
      const q = src[i];
      if (q !== '"' && q !== "'") fail(`attribute ${an} of <${name}> is not quoted`);
      const end = src.indexOf(q, i + 1);
      if (end < 0) fail('unterminated attribute value');
      if (an in el.attrs) fail(`duplicate attribute ${an} in <${name}>`);
      el.attrs[an] = decode(src.slice(i + 1, end));
      i = end + 1;
    }
    if (atTop && ++roots > 1) fail('more than one root element');
    elements.push(el);
  }
  if (stack.length > 0) fail(`unclosed <${stack[stack.length - 1].name}>`);
  if (elements.length === 0) fail('no root element');
  return elements;
}

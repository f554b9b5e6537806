// The built-in corpus: the sentences of the `nlp-corpus` package (100,000 English sentences), read
// from the installed package's JSON files (never the network), in the order its `all()` gives.
import * as fs from 'fs';
import * as path from 'path';

/** The name `loadDataset` accepts for the built-in corpus. */
export const BUILTIN_CORPUS = 'builtin:nlp-corpus';

export interface CorpusInfo {
  /** Folder of the installed package. */
  dir: string;
  version: string;
  /** The data files, in order. */
  files: string[];
}

let info: CorpusInfo | undefined;
let sentences: string[] | undefined;

/** Where the installed nlp-corpus package is and which data files it has. */
export function corpusInfo(): CorpusInfo {
  if (info) return info;
  let entry: string;
  try {
    // The package exports only its ESM entry; resolving it does not load it.
    entry = require.resolve('nlp-corpus');
  } catch (e) {
    throw new Error(`the built-in corpus needs the 'nlp-corpus' package, which is not installed ` +
      `(${(e as Error).message})`);
  }
  let dir = path.dirname(entry);
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      const meta = JSON.parse(fs.readFileSync(pj, 'utf8')) as { name?: string; version?: string };
      if (meta.name === 'nlp-corpus') {
        const builds = path.join(dir, 'builds');
        const files = fs.readdirSync(builds)
          .map((f) => /^doc-(\d+)\.json$/.exec(f))
          .filter((m): m is RegExpExecArray => m !== null)
          .sort((x, y) => Number(x[1]) - Number(y[1]))
          .map((m) => path.join(builds, m[0]));
        if (files.length === 0) throw new Error(`nlp-corpus at ${dir} has no builds/doc-*.json data files`);
        info = { dir, version: meta.version ?? 'unknown', files };
        return info;
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`could not find the nlp-corpus package folder above ${entry}`);
    dir = up;
  }
}

/** All sentences of the built-in corpus, deterministic order (doc-0.json … doc-99.json). Cached. */
export function corpusSentences(): string[] {
  if (sentences) return sentences;
  const out: string[] = [];
  for (const file of corpusInfo().files) {
    let data: unknown;
    try {
      data = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
    }
    if (!Array.isArray(data)) throw new Error(`${file}: expected a JSON array of sentences`);
    data.forEach((s, i) => {
      if (typeof s !== 'string') throw new Error(`${file}: entry ${i} is not a string`);
      out.push(s);
    });
  }
  sentences = out;
  return out;
}

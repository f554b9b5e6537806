// The typed mirror of the addon (src/native/types.ts, NativeAddon) names exactly what the loaded addon
// exports. The member set comes from the TypeScript checker, so WithAsync<…>'s `${name}Async` members
// are counted as the compiler sees them. Members typed optional (`?`) may be absent: they exist only in
// some builds.
import * as path from 'node:path';
import * as ts from 'typescript';
import { addon } from '../helpers';

const root = path.resolve(__dirname, '..', '..');
const typesFile = path.join(root, 'src', 'native', 'types.ts');

/**
 * Known mismatches, by name, each with the reason; the test fails when one is no longer a mismatch, so
 * the list only shrinks.
 */
const KNOWN_UNTYPED: Record<string, string> = {};
const KNOWN_MISSING: Record<string, string> = {};

interface TypedMember {
  optional: boolean;
  callable: boolean;
}

/**
 * NativeAddon's members as the checker resolves them (intersection, mapped WithAsync types), and the
 * compiler's errors in the types (an unresolved type would hide members).
 */
function typedMembers(): { members: Map<string, TypedMember>; errors: string[] } {
  const cfg = ts.readConfigFile(path.join(root, 'tsconfig.json'), ts.sys.readFile);
  const options = ts.parseJsonConfigFileContent(cfg.config, ts.sys, root).options;
  const program = ts.createProgram([typesFile], { ...options, noEmit: true });
  const errors = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(typesFile)!;
  const alias = source.statements.find((s): s is ts.TypeAliasDeclaration =>
    ts.isTypeAliasDeclaration(s) && s.name.text === 'NativeAddon');
  if (!alias) throw new Error(`no type alias NativeAddon in ${typesFile}`);
  const type = checker.getTypeAtLocation(alias.name);
  const out = new Map<string, TypedMember>();
  for (const p of checker.getPropertiesOfType(type)) {
    const t = checker.getTypeOfSymbolAtLocation(p, alias);
    out.set(p.name, {
      optional: (p.flags & ts.SymbolFlags.Optional) !== 0,
      callable: checker.getNonNullableType(t).getCallSignatures().length > 0,
    });
  }
  return { members: out, errors };
}

describe('NativeAddon (src/native/types) matches the addon\'s exports', () => {
  const { members: typed, errors } = typedMembers();
  const exported = new Set(Object.keys(addon));

  test('the checker sees the whole surface, Async variants included', () => {
    expect(errors).toEqual([]);
    for (const name of ['setThreads', 'gemm', 'gemmAsync', 'createTrainer', 'openWeights', 'cudaBenchGemm'])
      expect(typed.has(name)).toBe(true);
    expect(typed.has('setThreadsAsync')).toBe(false); // returns a number: no Async variant
  });

  test('every typed member is exported (optional ones may be absent in this build)', () => {
    const missing = [...typed].filter(([name, m]) => !m.optional && !exported.has(name)).map(([name]) => name);
    const unexpected = missing.filter((name) => !(name in KNOWN_MISSING));
    expect({ typedButNotExported: unexpected }).toEqual({ typedButNotExported: [] });
    const stale = Object.keys(KNOWN_MISSING).filter((name) => !missing.includes(name));
    expect({ staleKnownMissing: stale }).toEqual({ staleKnownMissing: [] });
  });

  test('every export is typed', () => {
    const untyped = [...exported].filter((name) => !typed.has(name));
    const unexpected = untyped.filter((name) => !(name in KNOWN_UNTYPED));
    expect({ exportedButNotTyped: unexpected }).toEqual({ exportedButNotTyped: [] });
    const stale = Object.keys(KNOWN_UNTYPED).filter((name) => !untyped.includes(name));
    expect({ staleKnownUntyped: stale }).toEqual({ staleKnownUntyped: [] });
  });

  test('members typed as functions are functions', () => {
    const wrong = [...typed].filter(([name, m]) => exported.has(name) &&
      m.callable !== (typeof (addon as unknown as Record<string, unknown>)[name] === 'function'))
      .map(([name]) => name);
    expect({ kindMismatch: wrong }).toEqual({ kindMismatch: [] });
  });
});

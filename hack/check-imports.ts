// The import-direction check `make lint` runs: `node hack/check-imports.ts [root]`.
// It reads every .ts file's relative imports (static, re-exports, `import('…')` calls and
// `import('…')` types) with the TypeScript parser and prints each one that breaks a rule
// as `file:line: imports X — rule`, exiting 1 when there is any. The rules:
//   1. product code never imports test or harness code (`dev/` may use `harness/`);
//   2. each layered product folder imports only the folders LAYERS names, and a folder of the
//      operator named in OPERATOR_LAYERS only what it names;
//   3. no cycle of files, and no cycle of folders (`operator/gateway/` ↔ `operator/controllers/`).
// Tests and test helpers may import anything and take no part in cycles.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

// ── The rules ──────────────────────────────────────────────────────────────────────────

/** The product: what ships and runs in a cluster or on a user's machine. */
const PRODUCT = ['cli', 'crds', 'lib', 'operator', 'sidecar', 'webhook', 'dev'];

/** Test and harness code: these folders, and anywhere a `*.test.ts`, a `testing.ts` or a
 *  `testing/` folder. */
const TEST_FOLDERS = ['harness', 'e2e', 'bench'];

/** Rule 1's one exception: `modelplane dev` runs the local cluster and the pod runner from
 *  `harness/` (but not its tests or test helpers). */
const MAY_IMPORT_HARNESS = ['dev'];

/** Rule 2, the layers: what a product folder may import of ours besides itself. A folder
 *  not listed (`cli/`, `dev/`) may import any product folder — `cli/` runs `dev/`. */
const LAYERS: Record<string, string[]> = {
  lib: [],
  crds: ['lib'],
  webhook: ['crds', 'lib'],
  sidecar: ['crds', 'lib'],
  operator: ['crds', 'lib', 'webhook'], // the operator serves the admission webhook as one of its roles
};

/** Rule 2 inside the operator: what a folder of `operator/` may import of ours besides itself
 *  (folders end in `/`; anything else is a file). A folder not listed may import any of the
 *  operator's folders that do not make a cycle. */
const OPERATOR_LAYERS: Record<string, string[]> = {
  // The durable store: built on the store's contract and the record it keeps, nothing else of
  // the operator (operator/main.ts wires it to the engine).
  'operator/store/': [
    'lib/',
    'operator/predictions/store.ts',
    'operator/predictions/record.ts',
    'operator/predictions/usage-store.ts',
  ],
  // Files: their backends, signed URLs and service, on the store's contract and nothing else.
  'operator/files/': ['lib/', 'operator/predictions/store.ts', 'operator/predictions/record.ts'],
};

/** Rule 3 sees a folder as one node: the folder one level under the top (`operator/gateway/`,
 *  its subfolders included), or the file itself when it sits at the top (`operator/main.ts`). */
function folderOf(file: string): string {
  const parts = file.split('/');
  return parts.length > 2 ? `${parts[0]}/${parts[1]}/` : file;
}

const RULE_TEST = 'product code imports test or harness code';
const ruleOperatorLayer = (folder: string): string =>
  `${folder} imports only ${[folder, ...OPERATOR_LAYERS[folder]!].join(', ')}`;
const ruleLayer = (folder: string): string =>
  `${folder}/ imports only ${[folder, ...(LAYERS[folder] ?? [])].map((f) => `${f}/`).join(', ')}`;

// ── The check ──────────────────────────────────────────────────────────────────────────

export interface Violation {
  /** The importing file, relative to the root, with `/` separators. */
  file: string;
  line: number;
  /** The imported file, relative to the root. */
  imports: string;
  rule: string;
}

export function formatViolation(v: Violation): string {
  return `${v.file}:${v.line}: imports ${v.imports} — ${v.rule}`;
}

interface Import {
  file: string;
  line: number;
  target: string;
}

/**
 * Every import under `root` that breaks a rule, each once, under the first rule it breaks:
 * the folder rules, then the cycles of files, then the cycles of folders. An import that
 * breaks a folder rule takes no part in cycles (it is the thing to fix), nor do tests and
 * test helpers.
 */
export function checkImports(root: string): Violation[] {
  const files = listTsFiles(root);
  const known = new Set(files);
  const imports = files.flatMap((file) => readImports(root, file, known));
  const violations: Violation[] = [];
  const graph: Import[] = [];
  for (const imp of imports) {
    const rule = brokenRule(imp.file, imp.target);
    if (rule) violations.push({ file: imp.file, line: imp.line, imports: imp.target, rule });
    else if (!isTestHelper(imp.file) && known.has(imp.target)) graph.push(imp);
  }
  violations.push(...findCycles(graph, (file) => file, 'import'), ...findCycles(graph, folderOf, 'folder'));
  const seen = new Set<string>();
  return violations.filter((v) => {
    const key = `${v.file}:${v.line}:${v.imports}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

const top = (file: string): string => (file.includes('/') ? file.slice(0, file.indexOf('/')) : '');

/** A test, a test helper, or harness code. */
function isTestCode(file: string): boolean {
  return isTestHelper(file) || TEST_FOLDERS.includes(top(file));
}

/** A test (`*.test.ts`) or a test helper (`testing.ts`, `testing/`, a contract suite `*.contract.ts`). */
function isTestHelper(file: string): boolean {
  const parts = file.split('/');
  return (
    file.endsWith('.test.ts') ||
    file.endsWith('.contract.ts') ||
    parts.at(-1) === 'testing.ts' ||
    parts.slice(0, -1).includes('testing')
  );
}

/** The rule `file` breaks by importing `target`, if any. Test code may import anything. */
function brokenRule(file: string, target: string): string | undefined {
  const from = top(file);
  if (!PRODUCT.includes(from) || isTestCode(file)) return undefined;
  const harnessAllowed =
    top(target) === 'harness' && MAY_IMPORT_HARNESS.includes(from) && !isTestHelper(target);
  if (isTestCode(target) && !harnessAllowed) return RULE_TEST;
  const allowed = LAYERS[from];
  const to = top(target);
  if (allowed && to !== from && !allowed.includes(to)) return ruleLayer(from);
  const inner = Object.keys(OPERATOR_LAYERS).find((folder) => file.startsWith(folder));
  if (inner && !target.startsWith(inner) && target.startsWith('operator/')) {
    const ok = OPERATOR_LAYERS[inner]!.filter((p) => p.startsWith('operator/'));
    if (!ok.some((p) => (p.endsWith('/') ? target.startsWith(p) : target === p)))
      return ruleOperatorLayer(inner);
  }
  if (inner && !target.startsWith('operator/') && !OPERATOR_LAYERS[inner]!.includes(`${to}/`)) {
    return ruleOperatorLayer(inner);
  }
  return undefined;
}

// ── Cycles (Tarjan's strongly connected components) ────────────────────────────────────

/**
 * Cycles in the graph whose nodes `nodeOf` names (files, or folders): in each tangle (a
 * strongly connected set), the shortest cycle through each of its nodes, one violation per
 * import along each distinct cycle.
 */
function findCycles(imports: Import[], nodeOf: (file: string) => string, kind: string): Violation[] {
  const edges = new Map<string, Map<string, Import>>(); // from → to → the first import that makes the edge
  for (const imp of imports) {
    const [from, to] = [nodeOf(imp.file), nodeOf(imp.target)];
    if (from === to) continue;
    if (!edges.has(from)) edges.set(from, new Map());
    if (!edges.get(from)!.has(to)) edges.get(from)!.set(to, imp);
  }
  const violations: Violation[] = [];
  for (const tangle of stronglyConnected([...edges.keys()].sort(), edges)) {
    if (tangle.length < 2) continue;
    const seen = new Set<string>();
    for (const node of tangle.sort()) {
      const cycle = shortestCycle(node, new Set(tangle), edges);
      const key = cycle.slice(1).sort().join(' ');
      if (seen.has(key)) continue; // the same cycle, entered at another node
      seen.add(key);
      if (kind === 'folder' && !cycle.some((n) => n.endsWith('/'))) continue; // files only: the file pass has it
      const rule = `${kind} cycle: ${cycle.join(' → ')}`;
      for (let i = 0; i + 1 < cycle.length; i++) {
        const imp = edges.get(cycle[i]!)!.get(cycle[i + 1]!)!;
        violations.push({ file: imp.file, line: imp.line, imports: imp.target, rule });
      }
    }
  }
  return violations;
}

function stronglyConnected(nodes: string[], edges: Map<string, Map<string, Import>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (node: string): void => {
    index.set(node, index.size);
    low.set(node, index.get(node)!);
    stack.push(node);
    onStack.add(node);
    for (const target of edges.get(node)?.keys() ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(node, Math.min(low.get(node)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(node, Math.min(low.get(node)!, index.get(target)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      components.push(component);
    }
  };
  for (const node of nodes) if (!index.has(node)) visit(node);
  return components;
}

/** The shortest path start → … → start inside `within`, a strongly connected set (breadth first). */
function shortestCycle(
  start: string,
  within: Set<string>,
  edges: Map<string, Map<string, Import>>,
): string[] {
  const cameFrom = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const node = queue[i]!;
    for (const target of edges.get(node)?.keys() ?? []) {
      if (!within.has(target) || cameFrom.has(target)) continue;
      cameFrom.set(target, node);
      if (target === start) {
        const path = [start];
        for (let at = node; at !== start; at = cameFrom.get(at)!) path.unshift(at);
        return [start, ...path];
      }
      queue.push(target);
    }
  }
  throw new Error(`no cycle through ${start}`);
}

// ── Reading the files ──────────────────────────────────────────────────────────────────

const SKIP_DIRS = new Set(['node_modules', 'dist']);

/** Every .ts file under `root` (relative, `/`-separated, sorted), leaving out dot-folders,
 *  node_modules and dist. */
function listTsFiles(root: string, dir = ''): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    const path = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory() && !entry.name.startsWith('.') && !SKIP_DIRS.has(entry.name)) {
      files.push(...listTsFiles(root, path));
    } else if (entry.isFile() && entry.name.endsWith('.ts')) {
      files.push(path);
    }
  }
  return files.sort();
}

/** The relative imports of `file` that land inside `root`, resolved to files. */
function readImports(root: string, file: string, known: Set<string>): Import[] {
  const source = ts.createSourceFile(file, readFileSync(join(root, file), 'utf8'), ts.ScriptTarget.Latest);
  const imports: Import[] = [];
  const visit = (node: ts.Node): void => {
    const specifier = moduleSpecifier(node);
    if (specifier && (specifier.text.startsWith('./') || specifier.text.startsWith('../'))) {
      const target = resolveImport(root, file, specifier.text, known);
      if (target !== undefined) {
        const line = source.getLineAndCharacterOfPosition(specifier.getStart(source)).line + 1;
        imports.push({ file, line, target });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return imports;
}

/** The module named by an import or export declaration, an `import('…')` call or an
 *  `import('…')` type. */
function moduleSpecifier(node: ts.Node): ts.StringLiteralLike | undefined {
  let expression: ts.Node | undefined;
  if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) expression = node.moduleSpecifier;
  else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
    expression = node.moduleReference.expression;
  } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
    expression = node.arguments[0];
  } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
    expression = node.argument.literal;
  }
  return expression && ts.isStringLiteralLike(expression) ? expression : undefined;
}

/** `specifier` from `file` as a path relative to `root`: the file itself, or the .ts file a
 *  `.js` or extensionless specifier means. Undefined when it leaves the root. */
function resolveImport(
  root: string,
  file: string,
  specifier: string,
  known: Set<string>,
): string | undefined {
  const path = relative(root, resolve(root, dirname(file), specifier))
    .split(sep)
    .join('/');
  if (path.startsWith('../') || path === '..') return undefined;
  const candidates = [path, path.replace(/\.js$/, '.ts'), `${path}.ts`, `${path}/index.ts`];
  return candidates.find((c) => known.has(c)) ?? path; // a missing file is tsc's to report
}

// ── Command line ───────────────────────────────────────────────────────────────────────

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..'));
  const violations = checkImports(root);
  for (const v of violations) console.log(formatViolation(v));
  if (violations.length > 0) {
    console.error(`check-imports: ${violations.length} import(s) break the rules of hack/check-imports.ts`);
    process.exit(1);
  }
  console.log('check-imports: every import follows the direction rules');
}

// Typed stores, the documented API and the typed protocol at compile time: `tsc --noEmit`
// accepts files that use them as documented (and the SDK's connection as protocol.ts types
// it), and refuses ones with mistakes exactly on the lines marked `// error`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const sdk = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

function typecheck(project: string): Promise<{ code: number; output: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [tsc, '-p', project, '--pretty', 'false'], { cwd: sdk, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      done({ code, output: stdout + stderr });
    });
  });
}

describe('types', () => {
  it('the documented usage type-checks', async () => {
    const { code, output } = await typecheck('test/types/tsconfig.ok.json');
    assert.equal(code, 0, output);
  });

  it('misuse fails to type-check, on the expected lines only', async () => {
    const { code, output } = await typecheck('test/types/tsconfig.bad.json');
    assert.notEqual(code, 0, 'tsc must fail');
    const elsewhere = output.split('\n').filter((line) => /error TS\d+/.test(line) && !/(^|\/)(wire-)?bad\.ts\(/.test(line));
    assert.deepEqual(elsewhere, [], 'errors only in the files of misuse');
    for (const [file, atLeast] of [
      ['bad.ts', 15],
      ['wire-bad.ts', 10],
    ] as const) {
      const lines = readFileSync(resolve(sdk, 'test/types', file), 'utf8').split('\n');
      const expected = lines.flatMap((line, i) => (line.trimEnd().endsWith('// error') ? [i + 1] : []));
      const pattern = new RegExp(`(?:^|[/\\s])${file.replace('.', '\\.')}\\((\\d+),\\d+\\): error TS\\d+`, 'gm');
      const actual = [...new Set([...output.matchAll(pattern)].map((m) => Number(m[1])))].sort((x, y) => x - y);
      assert.ok(expected.length >= atLeast, `${file} marks its errors`);
      assert.deepEqual(actual, expected, `${file}:\n${output}`);
    }
  });
});

// Typed stores and the documented API at compile time: `tsc --noEmit` accepts a file that
// uses the API as documented, and refuses one with mistakes exactly on the lines marked
// `// error`.

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
    const lines = readFileSync(resolve(sdk, 'test/types/bad.ts'), 'utf8').split('\n');
    const expected = lines.flatMap((line, i) => (line.trimEnd().endsWith('// error') ? [i + 1] : []));
    const actual = [
      ...new Set([...output.matchAll(/bad\.ts\((\d+),\d+\): error TS\d+/g)].map((m) => Number(m[1]))),
    ].sort((x, y) => x - y);
    assert.ok(expected.length >= 15, 'the file marks its errors');
    assert.deepEqual(actual, expected, output);
  });
});

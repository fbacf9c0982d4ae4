/**
 * The store format as FORMAT.md writes it down: a reader written from that
 * file alone, in Python, reads back a store of each kind the CLI made.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

function runReader(): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(ROOT, 'scripts/format-reader/run.sh')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

describe('FORMAT.md', () => {
  it('is enough for a second reader to read every byte of an encrypted and a plaintext store', async () => {
    const { code, output } = await runReader();
    expect(output, output).not.toMatch(/Traceback/);
    expect(code, output).toBe(0);
    expect(output.match(/^all checks passed$/gm)).toHaveLength(2);
    expect(output).toMatch(/encrypted, CONFIG MAC ok/);
    expect(output).toMatch(/plaintext, CONFIG MAC ok/);
  }, 120_000);
});

import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, kloset, tempDir } from '../helpers/cli.js';

/**
 * Runs the CLI on a pseudo-terminal (util-linux script) and answers each prompt
 * as soon as it shows, as a quick typist or an expect script does.
 */
function answerPrompts(args: string[], env: NodeJS.ProcessEnv, answers: string[], { pasted = false } = {}): Promise<{ code: number | null; output: string }> {
  const command = [BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('script', ['-qfec', command, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  let answered = 0;
  child.stdout.on('data', (data: Buffer) => {
    output += data.toString('utf8');
    const prompts = output.match(/passphrase(?: \(again\))?: /g)?.length ?? 0;
    // Pasted: every answer at once, on the first prompt, as a paste of two lines sends them.
    if (pasted && prompts > 0 && answered === 0) {
      child.stdin.write(answers.map((answer) => `${answer}\r\n`).join(''));
      answered = answers.length;
    }
    while (answered < prompts && answered < answers.length) child.stdin.write(`${answers[answered++]}\n`);
  });
  child.stdin.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      child.stdin.destroy();
      resolve({ code, output });
    });
  });
}

describe('the passphrase prompt', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    dir = await tempDir();
    env = { ...process.env, XDG_CACHE_HOME: path.join(dir, 'cache') };
    delete env.KLOSET_PASSPHRASE;
    delete env.PLAKAR_PASSPHRASE;
  });
  afterAll(() => fs.rm(dir, { recursive: true, force: true }));

  it('turns echo off before it asks, so an answer typed at once is never shown', async () => {
    // The echo was turned off only after the prompt was written: an answer sent on seeing the prompt
    // could reach the terminal while it still echoed. Several rounds, since that was a race.
    for (let round = 0; round < 6; round++) {
      const store = path.join(dir, `store${round}`);
      const secret = `typed secret ${round}`;
      const { code, output } = await answerPrompts(['at', store, 'create'], env, [secret, secret]);
      expect(output).toContain('passphrase (again): ');
      expect(output).not.toContain(secret);
      expect(code).toBe(0);
      const listed = await kloset(['at', store, 'ls'], { env: { KLOSET_PASSPHRASE: secret } });
      expect(listed.code).toBe(0);
    }
  }, 120_000);

  it('takes both lines of a paste, the second as the answer to the second question', async () => {
    const store = path.join(dir, 'pasted');
    const secret = 'pasted secret';
    const { code, output } = await answerPrompts(['at', store, 'create'], env, [secret, secret], { pasted: true });
    expect(output).not.toContain('do not match');
    expect(output).not.toContain(secret);
    expect(code).toBe(0);
    expect((await kloset(['at', store, 'ls'], { env: { KLOSET_PASSPHRASE: secret } })).code).toBe(0);
  }, 60_000);
});

import type { Command } from 'commander';
import type { CliContext } from '../context.js';

type Run = (work: () => Promise<number | void>) => Promise<void>;

export function registerStoreCommands(program: Command, context: () => CliContext, run: Run): void {
  void program;
  void context;
  void run;
}

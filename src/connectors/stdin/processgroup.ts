import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';

/** How long a group stopped with SIGTERM has to end before SIGKILL: the backup's end waits for it. */
export const KILL_AFTER_MS = 5000;
/** How often a group being stopped is looked at. */
const POLL_MS = 50;
/** How long processes sent SIGKILL are given to be gone, after which they are left to the kernel. */
const KILLED_WAIT_MS = 1000;

/**
 * The signals forwarded to the group. A command in a process group of its
 * own is no longer in the terminal's foreground group: Ctrl-C (SIGINT),
 * Ctrl-\ (SIGQUIT) and a hangup (SIGHUP) reach kloset alone, which hands
 * them on, as SIGTERM sent to kloset.
 */
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;
/** Those the backup does not stop on itself: the group is stopped on them too, so that the backup ends, as kloset would have. */
const STOPPING = new Set<NodeJS.Signals>(['SIGHUP', 'SIGQUIT']);

/** Sends `signal` to every process of the group; false when none is left (or none may be signalled: a setuid one). */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a process of the group still runs. One ended but not yet reaped
 * (a zombie, reparented to an init that reaps it late) runs no more: it is
 * looked for in /proc, where there is one.
 */
function groupRuns(pgid: number): boolean {
  if (!signalGroup(pgid, 0)) return false;
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return true;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'latin1');
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp …: the name in parentheses may hold anything, so the fields are read after its last ')'.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') return true;
  }
  return false;
}

/**
 * The processes of a command started in a process group of its own
 * (spawned detached: a session of its own), whose id is the command's pid:
 * what the command starts (the sleep of sh -c 'sleep 60; pg_dump …', the
 * gzip of a pipeline) is in it too, and is stopped with it. While any of
 * them may run, the terminal's signals that kloset receives are handed on
 * to the group, and the group is killed if kloset exits.
 */
export class CommandGroup {
  private stopped: Promise<void> | undefined;
  private gone = false;
  private readonly onSignal = (signal: NodeJS.Signals) => this.forward(signal);
  private readonly onExit = () => signalGroup(this.pgid, 'SIGKILL');

  constructor(private readonly pgid: number) {
    for (const signal of FORWARDED) process.on(signal, this.onSignal);
    process.on('exit', this.onExit);
  }

  /** A signal kloset received: the group gets it, as it did from the terminal; once it is being stopped, any signal kills it at once (a second Ctrl-C). */
  private forward(signal: NodeJS.Signals): void {
    if (this.stopped) {
      signalGroup(this.pgid, 'SIGKILL');
      return;
    }
    signalGroup(this.pgid, signal);
    if (STOPPING.has(signal)) void this.stop();
  }

  /**
   * Stops whatever of the group still runs: SIGTERM, then SIGKILL after
   * KILL_AFTER_MS. Resolves once none of it runs; nothing is signalled when
   * the group has already ended (its id may then be another's).
   */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      if (this.gone || !groupRuns(this.pgid)) return this.end();
      signalGroup(this.pgid, 'SIGTERM');
      for (const deadline = Date.now() + KILL_AFTER_MS; Date.now() < deadline; ) {
        await delay(POLL_MS);
        if (!groupRuns(this.pgid)) return this.end();
      }
      signalGroup(this.pgid, 'SIGKILL');
      for (const deadline = Date.now() + KILLED_WAIT_MS; Date.now() < deadline && groupRuns(this.pgid); ) await delay(POLL_MS);
      this.end();
    })();
    return this.stopped;
  }

  private end(): void {
    this.gone = true;
    for (const signal of FORWARDED) process.off(signal, this.onSignal);
    process.off('exit', this.onExit);
  }
}

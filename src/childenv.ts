/**
 * The environment handed to the programs kloset starts (the desktop's
 * browser opener, mkfifo and mknod, fusermount, a mount detaching into the
 * background): this process's, without the store passphrases it may have
 * been given there. A child keeps its environment for its whole life and
 * hands it on (a browser, to everything it starts), readable in
 * /proc/<pid>/environ; none of them needs a passphrase (a mount that
 * detaches gets its own through a pipe).
 */
export const PASSPHRASE_VARIABLES = ['KLOSET_PASSPHRASE', 'PLAKAR_PASSPHRASE', 'KLOSET_PEER_PASSPHRASE', 'KLOSET_NEW_PASSPHRASE'] as const;

export function childEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const copy = { ...env };
  for (const name of PASSPHRASE_VARIABLES) delete copy[name];
  return copy;
}

import { readFileSync } from 'node:fs';

/**
 * uid → user name and gid → group name from /etc/passwd and /etc/group, read
 * once: a snapshot then shows who owned a file even where the ids differ.
 * Directory services (LDAP, sssd) are not consulted; ids stay authoritative.
 */
export class Accounts {
  private users?: Map<number, string>;
  private groups?: Map<number, string>;

  user(uid: number): string | undefined {
    this.users ??= readIdFile('/etc/passwd');
    return this.users.get(uid);
  }

  group(gid: number): string | undefined {
    this.groups ??= readIdFile('/etc/group');
    return this.groups.get(gid);
  }
}

function readIdFile(file: string): Map<number, string> {
  const names = new Map<number, string>();
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return names;
  }
  for (const line of text.split('\n')) {
    const [name, , id] = line.split(':');
    const number = Number(id);
    if (name && Number.isInteger(number) && !names.has(number)) names.set(number, name);
  }
  return names;
}

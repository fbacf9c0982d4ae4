import { UsageError } from '../../errors.js';

/**
 * What a backup of a bucket does with objects in GLACIER or DEEP_ARCHIVE
 * that are not restored: 'skip' reports each and leaves it out (the backup
 * ends partial), 'fail' fails the backup. Read here, without the AWS SDK,
 * so that `config set` can check the value when it is typed.
 */
export type GlacierPolicy = 'skip' | 'fail';

export function parseGlacierPolicy(value: string | undefined, key = 'glacier'): GlacierPolicy {
  if (value === undefined || value === '' || value === 'skip') return 'skip';
  if (value === 'fail') return 'fail';
  throw new UsageError(`${key} must be 'skip' or 'fail', not '${value}'`);
}

import { createHash } from 'node:crypto';
import { NotFoundError } from '../errors.js';
import type { BlobLocation } from './blobindex.js';
import { packKey } from './packfile.js';
import { mapLimit, type Repository } from './repository.js';
import { BlobType } from './sealing.js';

export interface PackProblem {
  packId: Buffer;
  message: string;
}

export interface VerifyResult {
  packs: number;
  blobs: number;
  bytes: number;
  /** Ids of blobs that are missing, fail authentication or do not match their id. */
  damaged: Set<string>;
  problems: PackProblem[];
}

/** Checks one blob's bytes: authentication, decoding, and that its id is the MAC of its plaintext. */
export async function verifyBlob(repository: Repository, id: Buffer, location: BlobLocation, sealed: Buffer): Promise<void> {
  const plaintext = await repository.decodeLocated(id, location, sealed);
  if (location.type !== BlobType.snapshot && !repository.sealer.blobId(plaintext).equals(id)) {
    throw new Error(`blob ${id.toString('hex').slice(0, 16)}: content does not match its id`);
  }
}

/**
 * Reads every indexed pack whole (one request per pack), checks its SHA-256
 * name, then every blob the index places in it. Returns the damaged blob ids,
 * so the snapshot layer can name the files and snapshots they belong to.
 */
export async function verifyPacks(
  repository: Repository,
  /** `estimate`: the bytes of all packs to read, from the index (trailers left out). */
  onProgress?: (done: { packs: number; bytes: number; estimate: number }) => void,
  only?: Set<string>,
): Promise<VerifyResult> {
  const byPack = new Map<string, [Buffer, BlobLocation][]>();
  for (const [id, location] of repository.index) {
    if (only && !only.has(id.toString('latin1'))) continue;
    const key = location.packId.toString('hex');
    let list = byPack.get(key);
    if (!list) byPack.set(key, (list = []));
    list.push([id, location]);
  }
  let estimate = 0;
  for (const blobs of byPack.values()) estimate += Math.max(...blobs.map(([, l]) => l.offset + l.length));
  const result: VerifyResult = { packs: 0, blobs: 0, bytes: 0, damaged: new Set(), problems: [] };
  await mapLimit([...byPack.values()], 2, async (blobs) => {
    const packId = blobs[0][1].packId;
    let data: Buffer | undefined;
    try {
      data = await repository.store.get(packKey(packId));
      if (!createHash('sha256').update(data).digest().equals(packId)) {
        result.problems.push({ packId, message: 'content does not match its name (damaged)' });
      }
    } catch (err) {
      result.problems.push({ packId, message: err instanceof NotFoundError ? 'missing' : (err as Error).message });
    }
    for (const [id, location] of blobs) {
      result.blobs++;
      const end = location.offset + location.length;
      try {
        if (!data || end > data.length) throw new Error('truncated');
        await verifyBlob(repository, id, location, data.subarray(location.offset, end));
      } catch {
        result.damaged.add(id.toString('latin1'));
      }
    }
    result.packs++;
    result.bytes += data?.length ?? 0;
    onProgress?.({ packs: result.packs, bytes: result.bytes, estimate });
  });
  return result;
}

import { createHash } from 'node:crypto';
import { NotFoundError } from '../errors.js';
import { BlobIndex, decodeIndexDelta, type BlobLocation } from './blobindex.js';
import { packIdFromKey, packKey } from './packfile.js';
import { indexDeltaId, isIndexDeltaKey, mapLimit, type Repository } from './repository.js';
import { BlobType } from './sealing.js';

export interface DeltaProblem {
  key: string;
  message: string;
}

/**
 * Reads every index delta from the store itself, not the local copy of the
 * merged index: a delta damaged since it was merged would fail every
 * machine that has no such copy. Returns the deltas that do not open.
 */
export async function verifyIndexDeltas(repository: Repository): Promise<DeltaProblem[]> {
  const keys: string[] = [];
  for await (const { key } of repository.store.list('index/')) if (isIndexDeltaKey(key)) keys.push(key);
  const problems: DeltaProblem[] = [];
  await mapLimit(keys, 8, async (key) => {
    try {
      decodeIndexDelta(await repository.readSealed(key, BlobType.index, indexDeltaId(key)), new BlobIndex(), key);
    } catch (err) {
      if (err instanceof NotFoundError) return; // replaced by a writer meanwhile
      problems.push({ key, message: (err as Error).message.replace(`${key}: `, '') });
    }
  });
  return problems.sort((a, b) => a.key.localeCompare(b.key));
}

export interface PackProblem {
  packId: Buffer;
  message: string;
}

export interface VerifyResult {
  /** Packs read whole. */
  packs: number;
  /** Packs only looked up in the store's listing (`readPack` declined them): present, and long enough for their blobs. */
  listedOnly: number;
  /** Packs in the store that no index entry names: left by an interrupted backup, or by an index delta lost since. */
  unindexed: number;
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

/** Of every pack (listed or indexed), which to read whole. */
export type PackSubset = (packIds: Buffer[]) => (packId: Buffer) => boolean;

/**
 * Reads every indexed pack whole (one request per pack), or those
 * `readPack` picks, checks its SHA-256 name, then every blob the index
 * places in it. Returns the damaged blob ids, so the snapshot layer can name
 * the files and snapshots they belong to.
 */
export async function verifyPacks(
  repository: Repository,
  /** `estimate`: the bytes of all packs to read, from the index (trailers left out). */
  onProgress?: (done: { packs: number; bytes: number; estimate: number }) => void,
  only?: Set<string>,
  /** Given every pack, those to read whole (all when absent); the others are only looked up in the store's listing. */
  packSubset?: PackSubset,
): Promise<VerifyResult> {
  const byPack = new Map<string, [Buffer, BlobLocation][]>();
  for (const [id, location] of repository.index) {
    if (only && !only.has(id.toString('latin1'))) continue;
    const key = location.packId.toString('hex');
    let list = byPack.get(key);
    if (!list) byPack.set(key, (list = []));
    list.push([id, location]);
  }
  const result: VerifyResult = { packs: 0, listedOnly: 0, unindexed: 0, blobs: 0, bytes: 0, damaged: new Set(), problems: [] };
  // Packs whose blobs the index places elsewhere (a second copy two concurrent backups made, which
  // another machine's index may use) or nowhere (left by an interrupted backup): their names are checked.
  const others: Buffer[] = [];
  const listed = new Map<string, number>();
  const listedIds: Buffer[] = [];
  if (!only || packSubset) {
    for await (const { key, size } of repository.store.list('packs/')) {
      const packId = packIdFromKey(key);
      if (!packId) continue;
      listed.set(packId.toString('hex'), size);
      listedIds.push(packId);
    }
  }
  const readPack = packSubset?.([...listedIds, ...[...byPack.values()].map((blobs) => blobs[0][1].packId).filter((id) => !listed.has(id.toString('hex')))]);
  for (const packId of listedIds) {
    if (only || byPack.has(packId.toString('hex'))) continue;
    result.unindexed++;
    if (!readPack || readPack(packId)) others.push(packId);
  }
  if (readPack) {
    for (const [key, blobs] of byPack) {
      if (readPack(blobs[0][1].packId)) continue;
      byPack.delete(key);
      const size = listed.get(key);
      if (size === undefined) result.problems.push({ packId: blobs[0][1].packId, message: 'missing' });
      for (const [id, location] of blobs) {
        result.blobs++;
        if (size === undefined || location.offset + location.length > size) result.damaged.add(id.toString('latin1'));
      }
      result.listedOnly++;
    }
  }
  let estimate = 0;
  for (const blobs of byPack.values()) estimate += Math.max(...blobs.map(([, l]) => l.offset + l.length));
  for (const packId of others) estimate += listed.get(packId.toString('hex')) ?? 0;
  await mapLimit(others, 2, async (packId) => {
    try {
      const data = await repository.store.get(packKey(packId));
      if (!createHash('sha256').update(data).digest().equals(packId)) {
        result.problems.push({ packId, message: 'content does not match its name (damaged); no blob in use is read from it here' });
      }
      result.bytes += data.length;
    } catch (err) {
      if (!(err instanceof NotFoundError)) result.problems.push({ packId, message: (err as Error).message });
    }
    result.packs++;
    onProgress?.({ packs: result.packs, bytes: result.bytes, estimate });
  });
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

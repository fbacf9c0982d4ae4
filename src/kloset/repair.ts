import { randomBytes } from 'node:crypto';
import { IntegrityError, NotFoundError } from '../errors.js';
import { BlobIndex, decodeIndexDelta, encodeIndexDelta, type BlobLocation } from './blobindex.js';
import { packIdFromKey, readPackListing } from './packfile.js';
import { indexDeltaId, isIndexDeltaKey, mapLimit, type Repository } from './repository.js';
import { BlobType, ID_BYTES } from './sealing.js';
import type { DeltaProblem, PackProblem } from './verify.js';

export interface IndexRepairOptions {
  /** Read every pack's trailer, which replaces what the deltas say of that pack (kept where the trailer does not open). */
  readAllPacks?: boolean;
  /** Work out the repair and store nothing. */
  dryRun?: boolean;
  /** Throws unless the caller's exclusive lock still holds: asked just before old deltas are removed. */
  checkLock?: () => Promise<void>;
  onProgress?: (done: { packs: number; total: number }) => void;
}

export interface UnreadablePack extends PackProblem {
  /** A sound delta names the pack, and its entries stay in the index. */
  keptFromIndex: boolean;
}

export interface IndexRepair {
  deltas: number;
  packs: number;
  /** Deltas that do not open: their blobs are found again through the packs' trailers. */
  damagedDeltas: DeltaProblem[];
  /** Packs the deltas name that the store no longer holds, with how many blobs the index placed there. */
  missingPacks: { packId: Buffer; blobs: number }[];
  /** Packs whose trailer was read: those no sound delta names, or all of them. */
  packsRead: number;
  /** Packs whose trailer could not be read: their blobs stay unindexed, unless a sound delta names them. */
  unreadablePacks: UnreadablePack[];
  /** Blobs read from pack trailers. */
  blobsFound: number;
  /** Blobs the repaired index names. */
  blobs: number;
  /** Whether the index needed repair (and, unless a dry run, got it). */
  changed: boolean;
}

/** Trailer reads in flight: each is one small ranged read. */
const TRAILER_READS = 8;

/**
 * Rebuilds the index from the store's packs, as restic's `repair index`
 * does, under the exclusive lock. Every delta is read; a delta that does not
 * open is dropped, and so is every entry naming a pack the store no longer
 * holds (a backup would otherwise take those blobs for stored and write
 * snapshots that cannot be restored); every pack no sound delta names is
 * indexed from its trailer. The result is written as one new delta before
 * the old ones are removed, so a repair cut short leaves an index at least
 * as complete as before.
 */
export async function repairIndex(repository: Repository, options: IndexRepairOptions = {}): Promise<IndexRepair> {
  const store = repository.store;
  const deltaKeys: string[] = [];
  for await (const { key } of store.list('index/')) if (isIndexDeltaKey(key)) deltaKeys.push(key);
  const packSizes = new Map<string, { packId: Buffer; size: number }>();
  for await (const { key, size } of store.list('packs/')) {
    const packId = packIdFromKey(key);
    if (packId) packSizes.set(packId.toString('hex'), { packId, size });
  }

  // Each delta on its own: merged, a blob two packs hold would keep one location, perhaps the pack that is gone.
  const byPack = new Map<string, Map<string, [Buffer, BlobLocation]>>();
  const damagedDeltas: DeltaProblem[] = [];
  await mapLimit(deltaKeys, 8, async (key) => {
    const delta = new BlobIndex();
    try {
      decodeIndexDelta(await repository.readSealed(key, BlobType.index, indexDeltaId(key)), delta, key);
    } catch (err) {
      if (err instanceof NotFoundError) return;
      // Only what fails authentication or decoding is damage: a network error must not make a sound delta go.
      if (!(err instanceof IntegrityError)) throw err;
      damagedDeltas.push({ key, message: err.message.replace(`${key}: `, '') });
      return;
    }
    for (const [id, location] of delta) {
      const hex = location.packId.toString('hex');
      let blobs = byPack.get(hex);
      if (!blobs) byPack.set(hex, (blobs = new Map()));
      blobs.set(id.toString('latin1'), [id, location]);
    }
  });

  const missingPacks = [...byPack]
    .filter(([hex]) => !packSizes.has(hex))
    .map(([hex, blobs]) => {
      byPack.delete(hex);
      return { packId: Buffer.from(hex, 'hex'), blobs: blobs.size };
    });

  const toRead = [...packSizes].filter(([hex]) => options.readAllPacks || !byPack.has(hex)).map(([, pack]) => pack);
  const unreadablePacks: UnreadablePack[] = [];
  let packsRead = 0;
  let blobsFound = 0;
  let unnamedIndexed = 0;
  await mapLimit(toRead, TRAILER_READS, async ({ packId, size }) => {
    const hex = packId.toString('hex');
    try {
      const listed = await readPackListing(store, packId, size, repository.sealer);
      if (!byPack.has(hex)) unnamedIndexed++;
      byPack.set(
        hex,
        new Map(listed.map((blob) => [blob.id.toString('latin1'), [blob.id, { type: blob.type, packId, offset: blob.offset, length: blob.length, rawLength: blob.rawLength }]])),
      );
      blobsFound += listed.length;
    } catch (err) {
      if (err instanceof NotFoundError) return;
      if (!(err instanceof IntegrityError)) throw err;
      // With --read-all-packs, a pack whose trailer fails keeps what a sound delta says of it.
      unreadablePacks.push({ packId, message: err.message, keptFromIndex: byPack.has(hex) });
    } finally {
      options.onProgress?.({ packs: ++packsRead, total: toRead.length });
    }
  });
  const entries = [...byPack.values()].flatMap((blobs) => [...blobs.values()]);

  const changed = Boolean(options.readAllPacks) || damagedDeltas.length > 0 || missingPacks.length > 0 || unnamedIndexed > 0;
  const blobs = new Set(entries.map(([id]) => id.toString('latin1'))).size;
  if (changed && !options.dryRun) {
    if (entries.length > 0) {
      const deltaId = randomBytes(ID_BYTES);
      await store.put(`index/${deltaId.toString('hex')}`, await repository.sealStandalone(BlobType.index, deltaId, encodeIndexDelta(entries)));
    }
    await options.checkLock?.();
    for (const key of deltaKeys) await store.delete(key);
  }
  return {
    deltas: deltaKeys.length,
    packs: packSizes.size,
    damagedDeltas: damagedDeltas.sort((a, b) => a.key.localeCompare(b.key)),
    missingPacks,
    packsRead,
    unreadablePacks,
    blobsFound,
    blobs,
    changed,
  };
}

import { randomBytes } from 'node:crypto';
import { IntegrityError, KlosetError } from '../errors.js';
import { BlobIndex, encodeIndexDelta, type BlobLocation } from './blobindex.js';
import { PackBuilder, packIdFromKey, packKey } from './packfile.js';
import { isIndexDeltaKey, packBuffer, type Repository } from './repository.js';
import { BlobType, ID_BYTES } from './sealing.js';

/** A pack is rewritten when more than this share of its bytes belongs to no snapshot. */
const REPACK_UNUSED_SHARE = 0.25;

export interface SweepPlan {
  /** Packs that stay as they are. */
  keepPacks: Set<string>;
  /** Packs holding no blob in use, or named by no index delta (left by an interrupted backup). */
  deletePacks: { key: string; bytes: number }[];
  /** Packs mostly unused: their blobs in use move to new packs, then they go. */
  repackPacks: { key: string; bytes: number; liveBytes: number }[];
  /** Bytes the store holds in packs now. */
  packBytes: number;
  /** Blobs in use that the index cannot place: a sweep would lose them, so it refuses. */
  missing: number;
}

export interface SweepResult extends SweepPlan {
  /** Bytes of the packs written by repacking. */
  writtenBytes: number;
  /** Packs of `deletePacks` kept after all: this sweep stored them again, under the same name (see `stored` below). */
  storedAgain: Set<string>;
}

interface PackUse {
  key: string;
  bytes: number;
  indexed: boolean;
  liveBytes: number;
  deadBytes: number;
}

/**
 * Works out what a sweep removes. `live` holds the ids (as latin1 strings)
 * of every blob a snapshot refers to. The repository's index must be loaded
 * under an exclusive lock.
 */
export async function planSweep(repository: Repository, live: Set<string>): Promise<SweepPlan> {
  const packs = new Map<string, PackUse>();
  for await (const { key, size } of repository.store.list('packs/')) {
    if (packIdFromKey(key)) packs.set(key, { key, bytes: size, indexed: false, liveBytes: 0, deadBytes: 0 });
  }
  const placed = new Set<string>();
  for (const [id, location] of repository.index) {
    const use = packs.get(packKey(location.packId));
    if (!use) continue;
    use.indexed = true;
    const key = id.toString('latin1');
    if (live.has(key)) {
      use.liveBytes += location.length;
      placed.add(key);
    } else use.deadBytes += location.length;
  }
  let missing = 0;
  for (const key of live) if (!placed.has(key)) missing++;
  const plan: SweepPlan = { keepPacks: new Set(), deletePacks: [], repackPacks: [], packBytes: 0, missing };
  for (const use of packs.values()) {
    plan.packBytes += use.bytes;
    if (!use.indexed || use.liveBytes === 0) plan.deletePacks.push({ key: use.key, bytes: use.bytes });
    else if (use.deadBytes > REPACK_UNUSED_SHARE * (use.liveBytes + use.deadBytes)) {
      plan.repackPacks.push({ key: use.key, bytes: use.bytes, liveBytes: use.liveBytes });
    } else plan.keepPacks.add(use.key);
  }
  return plan;
}

/** Why a plan with blobs in use that no pack of the store holds is not carried out. */
export function missingMessage(missing: number): string {
  return `${missing} blobs in use are missing from the index or from the store's packs: nothing was removed (run check)`;
}

/**
 * Carries out a plan. The order keeps every snapshot readable if it stops
 * at any point: blobs in use are first copied into new packs, then one
 * index delta naming every blob that stays replaces all the others, and
 * only then are packs deleted, none of which any delta names any longer.
 */
export async function sweep(
  repository: Repository,
  live: Set<string>,
  plan: SweepPlan,
  onProgress?: (step: string) => void,
  beforeRemoving?: () => Promise<void>,
): Promise<SweepResult> {
  if (plan.missing > 0) {
    throw new IntegrityError(missingMessage(plan.missing));
  }
  const leaving = new Set([...plan.deletePacks, ...plan.repackPacks].map((p) => p.key));
  if (leaving.size === 0) return { ...plan, writtenBytes: 0, storedAgain: new Set() };
  const repacking = new Set(plan.repackPacks.map((p) => p.key));
  // The new index names what stays where it is (in use or not: a later backup may take it up again)...
  const kept = new BlobIndex();
  for (const [id, location] of repository.index) {
    if (plan.keepPacks.has(packKey(location.packId))) kept.add(id, location);
  }

  let writtenBytes = 0;
  const { targetSize } = repository.config.packfile;
  let builder = new PackBuilder(packBuffer(repository.config));
  /**
   * A pack is named by its bytes, and a plaintext store seals alike every time: a prune
   * stopped after it stored its new packs (a full disk, a kill) left these very packs, named
   * by no delta, and so among those to delete.
   */
  const stored = new Set<string>();
  const storePack = async () => {
    if (builder.empty) return;
    const { id: packId, data } = builder.finish(repository.sealer);
    await repository.store.put(packKey(packId), data);
    stored.add(packKey(packId));
    writtenBytes += data.length;
    for (const blob of builder.blobs) {
      kept.add(blob.id, { type: blob.type, packId, offset: blob.offset, length: blob.length, rawLength: blob.rawLength });
    }
    builder = new PackBuilder(builder.storage);
  };
  // ...and the blobs in use moved out of the packs that go.
  const byPack = new Map<string, [Buffer, BlobLocation][]>();
  for (const [id, location] of repository.index) {
    const key = packKey(location.packId);
    if (!repacking.has(key) || !live.has(id.toString('latin1'))) continue;
    let blobs = byPack.get(key);
    if (!blobs) byPack.set(key, (blobs = []));
    blobs.push([id, location]);
  }
  for (const [n, pack] of plan.repackPacks.entries()) {
    onProgress?.(`repacking ${n + 1}/${plan.repackPacks.length}`);
    const data = await repository.store.get(pack.key);
    for (const [id, location] of byPack.get(pack.key) ?? []) {
      const sealed = data.subarray(location.offset, location.offset + location.length);
      // Authenticated before it moves: a damaged blob stops the sweep rather than travel on.
      repository.sealer.open(location.type, id, sealed, `blob ${id.toString('hex').slice(0, 16)} in ${pack.key}`);
      builder.add(location.type, id, sealed, location.rawLength);
      if (builder.byteLength >= targetSize) await storePack();
    }
  }
  await storePack();

  // The last moment to find that another writer got in (a lock taken for dead while this one was
  // suspended): after it, deltas and packs go.
  await beforeRemoving?.();
  onProgress?.('writing the index');
  const oldDeltas: string[] = [];
  for await (const { key } of repository.store.list('index/')) {
    if (!isIndexDeltaKey(key)) continue;
    if (!repository.loadedDeltas.has(key)) throw new KlosetError(`${key} appeared while prune ran: another writer used the store, nothing was removed`);
    oldDeltas.push(key);
  }
  const deltaId = randomBytes(ID_BYTES);
  const deltaKey = `index/${deltaId.toString('hex')}`;
  await repository.store.put(deltaKey, await repository.sealStandalone(BlobType.index, deltaId, encodeIndexDelta(kept)));
  for (const key of oldDeltas) await repository.store.delete(key);

  const deleting = [...leaving].filter((key) => !stored.has(key));
  for (const [n, key] of deleting.entries()) {
    onProgress?.(`deleting packs ${n + 1}/${deleting.length}`);
    await repository.store.delete(key);
  }
  return { ...plan, writtenBytes, storedAgain: new Set([...leaving].filter((key) => stored.has(key))) };
}

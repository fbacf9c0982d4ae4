/**
 * The snapshots the viewer serves: their headers, one SnapshotReader per
 * snapshot (kept, so its cache of directory pages outlives a request), and
 * the store's totals as `kloset info` computes them. A snapshot made while
 * the viewer runs appears on the next listing, its index deltas merged then.
 */
import { LRUCache } from 'lru-cache';
import type { Repository } from '../kloset/repository.js';
import { listSnapshots, type SnapshotHeader } from '../snapshot/header.js';
import { SnapshotReader } from '../snapshot/reader.js';
import { HttpError } from './http.js';

export interface StoreTotals {
  location: string;
  store_id: string;
  created: string;
  encryption: string;
  compression: string;
  snapshots: number;
  packs: number;
  blobs: number;
  /** Sum of the snapshots' logical sizes. */
  logical_size: number;
  /** Bytes of the distinct blobs, before compression. */
  unique_size: number;
  /** Bytes of the blobs as stored (compressed, sealed). */
  stored_size: number;
  dedup_ratio: number;
  compression_ratio: number;
}

export class SnapshotCatalog {
  private readonly readers = new LRUCache<string, SnapshotReader>({ max: 32 });
  private known?: Set<string>;
  private totals?: { blobs: number; packs: number; stored: number; raw: number };

  /** Snapshots with a damaged header, already reported: each is logged once, not on every listing. */
  private readonly damaged = new Set<string>();

  constructor(
    readonly repository: Repository,
    private readonly log: (line: string) => void = () => undefined,
  ) {}

  /** Every snapshot, oldest first; merges new index deltas when a new snapshot shows up. */
  async list(): Promise<SnapshotHeader[]> {
    const headers = await listSnapshots(this.repository, (damaged) => {
      const key = damaged.id.toString('hex');
      if (!this.damaged.has(key)) this.log(damaged.message);
      this.damaged.add(key);
    });
    const ids = new Set(headers.map((h) => h.id.toString('hex')));
    if (this.known && [...ids].some((id) => !this.known!.has(id))) {
      await this.repository.loadIndex();
      this.totals = undefined;
    }
    this.known = ids;
    return headers;
  }

  /** The reader of the snapshot whose id starts with `prefix` (at least 4 hex digits). */
  async reader(prefix: string): Promise<SnapshotReader> {
    if (!/^[0-9a-f]{4,64}$/i.test(prefix)) throw new HttpError(400, `invalid snapshot id ${JSON.stringify(prefix)}`);
    const wanted = prefix.toLowerCase();
    const cached = this.readers.get(wanted);
    if (cached) return cached;
    const matches = (await this.list()).filter((h) => h.id.toString('hex').startsWith(wanted));
    if (matches.length === 0) throw new HttpError(404, `no snapshot with id ${prefix}`);
    if (matches.length > 1) throw new HttpError(400, `snapshot id ${prefix} is ambiguous`);
    const id = matches[0].id.toString('hex');
    let reader = this.readers.get(id);
    if (!reader) {
      reader = new SnapshotReader(this.repository, matches[0]);
      this.readers.set(id, reader);
    }
    return reader;
  }

  storeTotals(headers: SnapshotHeader[]): StoreTotals {
    const index = this.repository.index;
    if (!this.totals || this.totals.blobs !== index.size) {
      let stored = 0;
      let raw = 0;
      for (const [, location] of index) {
        stored += location.length;
        raw += location.rawLength;
      }
      this.totals = { blobs: index.size, packs: index.packs().length, stored, raw };
    }
    const { blobs, packs, stored, raw } = this.totals;
    const logical = headers.reduce((sum, h) => sum + h.stats.size, 0);
    const config = this.repository.config;
    return {
      location: this.repository.store.location,
      store_id: config.storeId,
      created: config.createdAt,
      encryption: config.encryption ? `${config.encryption.cipher}, key from ${config.encryption.kdf.algorithm}` : 'none (plaintext, authenticated)',
      compression: `${config.compression.algorithm} level ${config.compression.level}`,
      snapshots: headers.length,
      packs,
      blobs,
      logical_size: logical,
      unique_size: raw,
      stored_size: stored,
      dedup_ratio: raw ? Number((logical / raw).toFixed(2)) : 0,
      compression_ratio: stored ? Number((raw / stored).toFixed(2)) : 0,
    };
  }
}

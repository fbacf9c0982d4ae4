/**
 * Directory pages in the order the viewer shows them: subdirectories first,
 * then everything else, each group in the snapshot's name order (UTF-8
 * bytes). The reader pages a directory in name order only; for a directory
 * larger than one page the first request walks it once and keeps the
 * resulting order (4 bytes per entry), keyed by the directory's content id,
 * so later pages (and the same directory in other snapshots) cost only the
 * reads of the pages that hold their entries.
 */
import { LRUCache } from 'lru-cache';
import type { SnapshotReader } from '../snapshot/reader.js';
import type { Entry } from '../snapshot/tree.js';

/** Directories up to this size are read whole and sorted on each request. */
const SMALL_DIRECTORY = 1000;

export interface DirectoryPage {
  total: number;
  entries: Entry[];
}

export class DirectoryOrders {
  /** Position lists of large directories, by tree id; bounded by their total size. */
  private readonly orders = new LRUCache<string, Promise<Uint32Array>>({
    maxSize: 64 * 1024 * 1024,
    sizeCalculation: (_value, key) => Number(key.split(':')[1]) * 4 + 64,
  });

  async page(reader: SnapshotReader, dir: Entry, offset: number, limit: number): Promise<DirectoryPage> {
    const total = await reader.count(dir);
    if (offset >= total || limit === 0) return { total, entries: [] };
    if (total <= SMALL_DIRECTORY) {
      const all = await reader.list(dir, 0, total);
      const sorted = [...all.filter((e) => e.kind === 'directory'), ...all.filter((e) => e.kind !== 'directory')];
      return { total, entries: sorted.slice(offset, offset + limit) };
    }
    const order = await this.order(reader, dir, total);
    const positions = order.subarray(offset, Math.min(total, offset + limit));
    const entries: Entry[] = [];
    // Consecutive positions are one reader.list call.
    for (let i = 0; i < positions.length; ) {
      let j = i + 1;
      while (j < positions.length && positions[j] === positions[j - 1] + 1) j++;
      entries.push(...(await reader.list(dir, positions[i], j - i)));
      i = j;
    }
    return { total, entries };
  }

  private order(reader: SnapshotReader, dir: Entry, total: number): Promise<Uint32Array> {
    const key = `${dir.tree!.toString('hex')}:${total}`;
    let order = this.orders.get(key);
    if (!order) {
      order = (async () => {
        const positions = new Uint32Array(total);
        const others: number[] = [];
        let dirs = 0;
        let index = 0;
        for await (const child of reader.children(dir)) {
          if (child.kind === 'directory') positions[dirs++] = index;
          else others.push(index);
          index++;
        }
        positions.set(others, dirs);
        return positions;
      })();
      order.catch(() => this.orders.delete(key));
      this.orders.set(key, order);
    }
    return order;
  }
}

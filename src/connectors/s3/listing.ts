/**
 * Turns one level of an S3 listing (keys and common prefixes below a prefix,
 * in key order) into entry names in compareNames order, streaming.
 *
 * The two orders differ: S3 lists the directory `a` as `a/`, after `a-1`,
 * `a.txt` and every other `a…` whose next byte sorts before '/', while the
 * tree wants `a` first. And whether the object `a` is named `a` or `a％`
 * depends on whether `a/` turns up later. So entries wait in a small buffer
 * until nothing still to come can sort before them (a lower bound computed
 * from the last key seen, see KEYS.md "Order"). When more than `window`
 * entries wait (a million keys `a-…` before `a/`), the merge asks S3 directly
 * whether the blocking directory exists (one ListObjectsV2 with MaxKeys 1),
 * so memory stays bounded by the window, never by the bucket.
 */
import { directoryName, escapeChars, objectName } from './keys.js';

export interface ListedItem<T> {
  /** The key's part below the listed prefix, without the trailing '/' of a common prefix. */
  segment: string;
  directory: boolean;
  data: T;
}

export interface OrderedItem<T> {
  name: string;
  segment: string;
  directory: boolean;
  /** For an object: whether a directory of the same segment exists (its name then carries OBJECT_SUFFIX). */
  shadowed: boolean;
  /** Undefined for a directory found by `probe` (its common prefix arrives later and is skipped). */
  data: T | undefined;
}

export class ListingOrderError extends Error {}

const SLASH = 0x2f;

function bytes(text: string): Buffer {
  return Buffer.from(text, 'utf8');
}

/** The position of an item in S3's order: a common prefix sorts as its segment followed by '/'. */
function rawKey(item: { segment: string; directory: boolean }): Buffer {
  return bytes(item.directory ? `${item.segment}/` : item.segment);
}

interface Ready<T> {
  key: Buffer;
  item: OrderedItem<T>;
}

/** A binary min-heap of items ordered by their `key` bytes. */
export class KeyHeap<T extends { key: Buffer }> {
  private readonly heap: T[] = [];

  get size(): number {
    return this.heap.length;
  }

  peek(): T | undefined {
    return this.heap[0];
  }

  clear(): void {
    this.heap.length = 0;
  }

  push(entry: T): void {
    const heap = this.heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (Buffer.compare(heap[parent].key, heap[i].key) <= 0) break;
      [heap[parent], heap[i]] = [heap[i], heap[parent]];
      i = parent;
    }
  }

  pop(): T {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && Buffer.compare(heap[l].key, heap[m].key) < 0) m = l;
        if (r < heap.length && Buffer.compare(heap[r].key, heap[m].key) < 0) m = r;
        if (m === i) break;
        [heap[m], heap[i]] = [heap[i], heap[m]];
        i = m;
      }
    }
    return top;
  }
}

/**
 * Segments of directories that could still be listed and would sort, as
 * names, before the last key seen: the prefixes q of `segment` whose next
 * character sorts before '/' (then `q/` comes after `segment` in S3's order),
 * and for an object the segment itself.
 */
function openCandidates(segment: string, directory: boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i < segment.length; i++) {
    if (segment.charCodeAt(i) < SLASH) out.push(segment.slice(0, i));
  }
  if (!directory) out.push(segment);
  return out;
}

/**
 * Merges the pages of one listing level into entry-name order. `probe(segment)`
 * tells whether any key starts with `<prefix><segment>/`.
 */
export async function* orderListing<T>(
  pages: AsyncIterable<ListedItem<T>[]>,
  probe: (segment: string) => Promise<boolean>,
  window = 2000,
): AsyncGenerator<OrderedItem<T>> {
  const ready = new KeyHeap<Ready<T>>();
  const enqueue = (item: OrderedItem<T>) => ready.push({ key: bytes(item.name), item });
  /** Objects whose name waits on whether the directory of the same segment exists. */
  let pending: ListedItem<T>[] = [];
  /** What probes found: true = the directory exists and was emitted early; false = it does not exist. */
  const probed = new Map<string, boolean>();
  /** Common prefixes of the previous and current page: a server may repeat one across pages. */
  let seenDirs = new Set<string>();
  let cursor: Buffer | undefined;
  let cursorItem: { segment: string; directory: boolean } | undefined;

  const addObject = (item: ListedItem<T>, shadowed: boolean) =>
    enqueue({
      name: objectName(item.segment, shadowed),
      segment: item.segment,
      directory: false,
      shadowed,
      data: item.data,
    });

  /** The smallest name anything still unlisted can have, and the unresolved directory that sets it. */
  const lowerBound = (): { bound: Buffer | undefined; blocker: string | undefined } => {
    if (!cursorItem) return { bound: Buffer.alloc(0), blocker: undefined };
    // Ordinary keys after the cursor sort after it: escapeChars keeps the order, the marks only lengthen.
    let bound = bytes(escapeChars(cursorItem.segment));
    let blocker: string | undefined;
    for (const segment of openCandidates(cursorItem.segment, cursorItem.directory)) {
      if (probed.has(segment)) continue;
      const name = bytes(directoryName(segment));
      if (Buffer.compare(name, bound) < 0) {
        bound = name;
        blocker = segment;
      }
    }
    return { bound, blocker };
  };

  function* drain(bound: Buffer | undefined): Generator<OrderedItem<T>> {
    while (ready.size > 0 && (bound === undefined || Buffer.compare(ready.peek()!.key, bound) < 0)) yield ready.pop().item;
  }

  for await (const page of pages) {
    const items = page
      .map((item) => ({ item, key: rawKey(item) }))
      .sort((a, b) => Buffer.compare(a.key, b.key));
    const pageDirs = new Set<string>();
    for (const { item, key } of items) {
      if (item.directory) pageDirs.add(item.segment);
      if (cursor && Buffer.compare(key, cursor) <= 0) {
        if (item.directory && (seenDirs.has(item.segment) || probed.get(item.segment) === true)) continue;
        throw new ListingOrderError(
          `the server listed ${JSON.stringify(item.segment)} after ${JSON.stringify(cursorItem!.segment)}: not in key order`,
        );
      }
      cursor = key;
      cursorItem = item;
      // Objects waiting on this segment's directory: settled once the listing passes `<segment>/`.
      if (pending.length > 0) {
        const still: ListedItem<T>[] = [];
        for (const waiting of pending) {
          if (item.directory && item.segment === waiting.segment) addObject(waiting, true);
          else if (Buffer.compare(key, bytes(`${waiting.segment}/`)) > 0) addObject(waiting, false);
          else still.push(waiting);
        }
        pending = still;
      }
      for (const segment of [...probed.keys()]) {
        if (Buffer.compare(key, bytes(`${segment}/`)) > 0) probed.delete(segment);
      }
      if (item.directory) {
        if (probed.get(item.segment) === true) probed.delete(item.segment); // emitted early
        else enqueue({ name: directoryName(item.segment), segment: item.segment, directory: true, shadowed: false, data: item.data });
      } else if (probed.has(item.segment)) {
        addObject(item, probed.get(item.segment)!);
      } else {
        pending.push(item);
      }
      yield* drain(lowerBound().bound);
      // Too much waits on one directory the listing has not reached yet: ask S3.
      while (ready.size + pending.length > window) {
        const { blocker } = lowerBound();
        if (blocker === undefined) break;
        const exists = await probe(blocker);
        probed.set(blocker, exists);
        if (exists) enqueue({ name: directoryName(blocker), segment: blocker, directory: true, shadowed: false, data: undefined });
        const still: ListedItem<T>[] = [];
        for (const waiting of pending) {
          if (waiting.segment === blocker) addObject(waiting, exists);
          else still.push(waiting);
        }
        pending = still;
        yield* drain(lowerBound().bound);
      }
    }
    seenDirs = pageDirs;
  }
  for (const waiting of pending) addObject(waiting, probed.get(waiting.segment) === true);
  yield* drain(undefined);
}

/** A bounded number of tasks at once; acquire() waits for a free slot. */
export class Slots {
  private free: number;
  private readonly waiters: (() => void)[] = [];
  constructor(size: number) {
    this.free = size;
  }
  /** Waits for a free slot; the function returned gives it back, once however often it is called. */
  async acquire(): Promise<() => void> {
    while (this.free === 0) await new Promise<void>((r) => this.waiters.push(r));
    return this.take();
  }

  /** A free slot now, or undefined. */
  tryAcquire(): (() => void) | undefined {
    return this.free > 0 ? this.take() : undefined;
  }

  private take(): () => void {
    this.free--;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.free++;
      this.waiters.shift()?.();
    };
  }
}

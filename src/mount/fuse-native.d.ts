/** The part of fuse-native's API this project uses (the package ships no types). */
declare module 'fuse-native' {
  type Callback = (code: number, ...values: unknown[]) => void;
  export interface FuseOptions {
    force?: boolean;
    mkdir?: boolean;
    debug?: boolean;
    allowOther?: boolean;
    defaultPermissions?: boolean;
    fsname?: string;
    subtype?: string;
    kernelCache?: boolean;
    attrTimeout?: number;
    entryTimeout?: number;
    maxRead?: number;
    /** Per-operation deadline in ms: an operation still pending then answers EIO. */
    timeout?: number | false;
  }
  export default class Fuse {
    constructor(mountpoint: string, ops: Record<string, (...args: any[]) => void>, options?: FuseOptions);
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mountpoint: string, cb: (err: Error | null) => void): void;
    static ENOENT: number;
    static EIO: number;
    static EROFS: number;
    static EACCES: number;
    static EINVAL: number;
    static ENOTDIR: number;
    static EISDIR: number;
    static ENODATA: number;
  }
  export type { Callback };
}

/** The HTTP rules the viewer applies: byte ranges, download names, addresses, text sniffing. */
import { describe, expect, it } from 'vitest';
import { contentDisposition, parseRange } from '../../src/ui/http.js';
import { looksLikeText, presentationByName } from '../../src/ui/preview.js';
import { acceptedHosts, isLoopback, parseAddress } from '../../src/ui/server.js';

describe('parseRange', () => {
  it('reads single, open, suffix and multiple ranges, clamped to the size', () => {
    expect(parseRange('bytes=0-9', 100)).toEqual([{ start: 0, end: 9 }]);
    expect(parseRange('bytes=90-', 100)).toEqual([{ start: 90, end: 99 }]);
    expect(parseRange('bytes=-10', 100)).toEqual([{ start: 90, end: 99 }]);
    expect(parseRange('bytes=-1000', 100)).toEqual([{ start: 0, end: 99 }]);
    expect(parseRange('bytes=50-1000', 100)).toEqual([{ start: 50, end: 99 }]);
    expect(parseRange('bytes=0-0, 5-6 ,-1', 100)).toEqual([{ start: 0, end: 0 }, { start: 5, end: 6 }, { start: 99, end: 99 }]);
  });

  it('is unsatisfiable past the end or on an empty file', () => {
    expect(parseRange('bytes=100-', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-', 0)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', 100)).toBe('unsatisfiable');
  });

  it('ignores what is malformed, another unit, or too many ranges', () => {
    expect(parseRange(undefined, 100)).toBeUndefined();
    expect(parseRange('items=0-1', 100)).toBeUndefined();
    expect(parseRange('bytes=5-1', 100)).toBeUndefined();
    expect(parseRange('bytes=-', 100)).toBeUndefined();
    expect(parseRange('bytes=a-b', 100)).toBeUndefined();
    expect(parseRange(`bytes=${Array.from({ length: 17 }, (_, i) => `${i}-${i}`).join(',')}`, 100)).toBeUndefined();
  });
});

describe('contentDisposition', () => {
  it('gives an ASCII fallback and the exact UTF-8 name', () => {
    expect(contentDisposition('attachment', 'plain.txt')).toBe(`attachment; filename="plain.txt"; filename*=UTF-8''plain.txt`);
    expect(contentDisposition('inline', 'a "b" \\ 100% é.txt')).toBe(`inline; filename="a _b_ _ 100_ _.txt"; filename*=UTF-8''a%20%22b%22%20%5C%20100%25%20%C3%A9.txt`);
    expect(contentDisposition('attachment', "it's (x)*")).toBe(`attachment; filename="it's (x)*"; filename*=UTF-8''it%27s%20%28x%29%2A`);
    expect(contentDisposition('attachment', 'line\nbreak\r')).toBe(`attachment; filename="line_break_"; filename*=UTF-8''line%0Abreak%0D`);
  });
});

describe('addresses', () => {
  it('accept loopback only', () => {
    expect(parseAddress('127.0.0.1:8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseAddress(':0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseAddress('9000')).toEqual({ host: '127.0.0.1', port: 9000 });
    expect(parseAddress('[::1]:80')).toEqual({ host: '::1', port: 80 });
    expect(parseAddress('localhost:1')).toEqual({ host: 'localhost', port: 1 });
    for (const bad of ['0.0.0.0:80', '[::]:80', '192.168.1.2:80', 'example.com:80', '127.0.0.1:99999', 'nonsense']) {
      expect(() => parseAddress(bad), bad).toThrow();
    }
    expect(isLoopback('127.1.2.3')).toBe(true);
    expect(isLoopback('128.0.0.1')).toBe(false);
  });

  it('refuse a host name that only begins like a loopback address, which DNS may send anywhere', () => {
    for (const name of ['127.0.0.1.nip.io', '127.0.0.1.example.com', '127.1.2.3x']) {
      expect(isLoopback(name), name).toBe(false);
      expect(() => parseAddress(`${name}:8080`), name).toThrow(/refusing to listen/);
    }
  });

  it('are named in the Host header with their port, which on port 80 browsers leave out', () => {
    expect([...acceptedHosts(['Kloset-AB.localhost', '127.0.0.1'], 8080)]).toEqual(['kloset-ab.localhost:8080', '127.0.0.1:8080']);
    expect([...acceptedHosts(['kloset-ab.localhost', '[::1]'], 80)]).toEqual(['kloset-ab.localhost:80', '[::1]:80', 'kloset-ab.localhost', '[::1]']);
  });
});

describe('previews', () => {
  it('sniff UTF-8 text, allowing a character cut at the end of the sample', () => {
    expect(looksLikeText(Buffer.from('plain text\n'))).toBe(true);
    expect(looksLikeText(Buffer.from('été').subarray(0, 4))).toBe(true); // 'ét' and half of 'é'
    expect(looksLikeText(Buffer.from([0x68, 0x00, 0x69]))).toBe(false);
    expect(looksLikeText(Buffer.from([0xff, 0xfe, 0x41]))).toBe(false);
  });

  it('never type markup as something a browser runs', () => {
    for (const name of ['a.html', 'a.htm', 'a.svg', 'a.xml', 'a.xhtml', 'a.js']) expect(presentationByName(name)?.contentType, name).toBe('text/plain; charset=utf-8');
    expect(presentationByName('x', 'image/svg+xml')?.contentType).toBe('text/plain; charset=utf-8');
    for (const type of ['audio/x+xml', 'video/svg+xml', 'audio/vnd.a+json']) expect(presentationByName('x', type)?.contentType, type).toBe('text/plain; charset=utf-8');
    expect(presentationByName('x', 'text/html')?.contentType).toBe('text/plain; charset=utf-8');
    expect(presentationByName('x', 'application/x-msdownload')).toBeUndefined();
    expect(presentationByName('photo.JPG')).toMatchObject({ preview: 'image', contentType: 'image/jpeg' });
  });
});

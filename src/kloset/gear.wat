;; FastCDC's gear scan (see chunker.ts), as WebAssembly: three times the speed
;; of the same loop in JavaScript, where bounds checks on the two array loads
;; cost more than the hash. The gear table sits at address 0 (256 x i32,
;; little-endian), the bytes to scan after it. scripts/gear-wasm.mjs compiles
;; this file into gearwasm.ts.
(module
  (memory (export "memory") 2)
  ;; The running hash: set before a scan, left after it (kept across windows and pushes).
  (global $hash (export "hash") (mut i32) (i32.const 0))
  ;; Scans memory[p, end): with the strict mask below `normal`, then the loose one.
  ;; Returns the address just past the byte whose hash matched, or -1.
  (func (export "scan") (param $p i32) (param $normal i32) (param $end i32) (param $strict i32) (param $loose i32) (result i32)
    (local $h i32)
    (local.set $h (global.get $hash))
    (block $strict_done
      (loop $strict_loop
        (br_if $strict_done (i32.ge_u (local.get $p) (local.get $normal)))
        (local.set $h
          (i32.add
            (i32.shl (local.get $h) (i32.const 1))
            (i32.load (i32.shl (i32.load8_u (local.get $p)) (i32.const 2)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (if (i32.eqz (i32.and (local.get $h) (local.get $strict)))
          (then
            (global.set $hash (local.get $h))
            (return (local.get $p))))
        (br $strict_loop)))
    (block $loose_done
      (loop $loose_loop
        (br_if $loose_done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $h
          (i32.add
            (i32.shl (local.get $h) (i32.const 1))
            (i32.load (i32.shl (i32.load8_u (local.get $p)) (i32.const 2)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (if (i32.eqz (i32.and (local.get $h) (local.get $loose)))
          (then
            (global.set $hash (local.get $h))
            (return (local.get $p))))
        (br $loose_loop)))
    (global.set $hash (local.get $h))
    (i32.const -1)))

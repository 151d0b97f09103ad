;; The bucket scan of PhashIndex.find (phash-index.ts), in WebAssembly for its 64-bit popcount (one
;; instruction here, two 32-bit bit-twiddling popcounts in JavaScript). Its compiled bytes are
;; embedded in phash-scan-wasm.ts by `npm run build:wasm`; test/phash-index.test.ts checks they match
;; this source.
;;
;; Memory, laid out by PhashIndex (all offsets in bytes):
;;   probes:  $n u32 words at $probes, each (chunk << 16) | bucket value;
;;   offsets: for chunk c (0..3), u32[65537] at $off + c * 262148: bucket v holds entries
;;            offsets[v] .. offsets[v + 1] - 1;
;;   hashes:  for chunk c, the stored hashes as i64 (hi << 32 | lo), sorted by chunk value (insertion
;;            order within a bucket), at $ent + c * $stride, plus one spare i64 at the end;
;;   ids:     for chunk c, u32 insertion numbers in the same order, at $ids + c * $idStride;
;;   tail:    the hashes added since the tables were built: i64 hashes at $tail (tail slot i, insertion
;;            number $frozen + i), and per chunk a chain per bucket: i32[65536] heads at
;;            $heads + c * 262144 (newest slot, or -1), i32[$cap] links at $links + c * 4 * $cap.
;;
;; first() returns the smallest insertion number among the entries of the probed buckets, tables and
;; tail, that lie within $d bits of (hi, lo), or 0xffffffff. With $checked set, an entry within $d
;; bits counts only when the imported accept(insertion number, distance) says so (PhashIndex's
;; near-duplicate check); it is asked only about entries earlier than the best accepted so far. A first pass loads the first, middle and last-plus-one
;; hash of every probed bucket: independent loads, so the CPU overlaps their cache misses; the
;; second pass, which does the work, then finds the buckets in cache (128 probes into a million
;; hashes: 50k lookups/s without that pass, 130k with it).
(module
  (import "env" "accept" (func $accept (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "first")
    (param $probes i32) (param $n i32) (param $hi i32) (param $lo i32) (param $d i32)
    (param $off i32) (param $ent i32) (param $stride i32) (param $ids i32) (param $idStride i32)
    (param $frozen i32) (param $tail i32) (param $heads i32) (param $links i32) (param $cap i32)
    (param $checked i32)
    (result i32)
    (local $q i64) (local $p i32) (local $w i32) (local $c i32) (local $o i32)
    (local $base i32) (local $start i32) (local $stop i32) (local $ptr i32) (local $end i32)
    (local $best i32) (local $id i32) (local $touch i64) (local $i i32) (local $dist i32)
    (local.set $q
      (i64.or (i64.shl (i64.extend_i32_u (local.get $hi)) (i64.const 32)) (i64.extend_i32_u (local.get $lo))))
    (local.set $best (i32.const -1))

    ;; Pass 1: touch every probed bucket.
    (block $touched
      (loop $next
        (br_if $touched (i32.ge_u (local.get $p) (local.get $n)))
        (local.set $w (i32.load (i32.add (local.get $probes) (i32.shl (local.get $p) (i32.const 2)))))
        (local.set $c (i32.shr_u (local.get $w) (i32.const 16)))
        (local.set $o
          (i32.add (i32.add (local.get $off) (i32.mul (local.get $c) (i32.const 262148)))
                   (i32.shl (i32.and (local.get $w) (i32.const 65535)) (i32.const 2))))
        (local.set $base (i32.add (local.get $ent) (i32.mul (local.get $c) (local.get $stride))))
        (local.set $start (i32.load (local.get $o)))
        (local.set $stop (i32.load offset=4 (local.get $o)))
        (local.set $touch
          (i64.xor (local.get $touch)
            (i64.xor
              (i64.xor (i64.load (i32.add (local.get $base) (i32.shl (local.get $start) (i32.const 3))))
                       (i64.load (i32.add (local.get $base) (i32.shl (local.get $stop) (i32.const 3)))))
              (i64.load (i32.add (local.get $base)
                (i32.shl (i32.shr_u (i32.add (local.get $start) (local.get $stop)) (i32.const 1)) (i32.const 3)))))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))

    ;; Pass 2: the smallest insertion number within $d.
    (local.set $p (i32.const 0))
    (block $scanned
      (loop $next
        (br_if $scanned (i32.ge_u (local.get $p) (local.get $n)))
        (local.set $w (i32.load (i32.add (local.get $probes) (i32.shl (local.get $p) (i32.const 2)))))
        (local.set $c (i32.shr_u (local.get $w) (i32.const 16)))
        (local.set $o
          (i32.add (i32.add (local.get $off) (i32.mul (local.get $c) (i32.const 262148)))
                   (i32.shl (i32.and (local.get $w) (i32.const 65535)) (i32.const 2))))
        (local.set $base (i32.add (local.get $ent) (i32.mul (local.get $c) (local.get $stride))))
        (local.set $start (i32.load (local.get $o)))
        (local.set $ptr (i32.add (local.get $base) (i32.shl (local.get $start) (i32.const 3))))
        (local.set $end (i32.add (local.get $base) (i32.shl (i32.load offset=4 (local.get $o)) (i32.const 3))))
        (block $bucket
          (loop $entry
            (br_if $bucket (i32.ge_u (local.get $ptr) (local.get $end)))
            (local.set $dist (i32.wrap_i64 (i64.popcnt (i64.xor (i64.load (local.get $ptr)) (local.get $q)))))
            (if (i32.le_u (local.get $dist) (local.get $d))
              (then
                (local.set $id
                  (i32.load (i32.add (i32.add (local.get $ids) (i32.mul (local.get $c) (local.get $idStride)))
                                     (i32.shr_u (i32.sub (local.get $ptr) (local.get $base)) (i32.const 1)))))
                (if (i32.lt_u (local.get $id) (local.get $best))
                  (then
                    ;; (`or` would evaluate both sides: accept is called only with $checked set)
                    (if (i32.eqz (local.get $checked))
                      (then (local.set $best (local.get $id)))
                      (else (if (call $accept (local.get $id) (local.get $dist))
                        (then (local.set $best (local.get $id))))))))))
            (local.set $ptr (i32.add (local.get $ptr) (i32.const 8)))
            (br $entry)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))

    ;; Pass 3: the tail, only while no table entry matched (every tail entry came later).
    (if (i32.eq (local.get $best) (i32.const -1))
      (then
        (local.set $p (i32.const 0))
        (block $chained
          (loop $next
            (br_if $chained (i32.ge_u (local.get $p) (local.get $n)))
            (local.set $w (i32.load (i32.add (local.get $probes) (i32.shl (local.get $p) (i32.const 2)))))
            (local.set $c (i32.shr_u (local.get $w) (i32.const 16)))
            (local.set $i
              (i32.load (i32.add (i32.add (local.get $heads) (i32.shl (local.get $c) (i32.const 18)))
                                 (i32.shl (i32.and (local.get $w) (i32.const 65535)) (i32.const 2)))))
            (block $end
              (loop $link
                (br_if $end (i32.lt_s (local.get $i) (i32.const 0)))
                (local.set $dist
                  (i32.wrap_i64 (i64.popcnt (i64.xor (i64.load (i32.add (local.get $tail) (i32.shl (local.get $i) (i32.const 3))))
                                                     (local.get $q)))))
                (local.set $id (i32.add (local.get $frozen) (local.get $i)))
                (if (i32.and (i32.le_u (local.get $dist) (local.get $d)) (i32.lt_u (local.get $id) (local.get $best)))
                  (then
                    ;; (`or` would evaluate both sides: accept is called only with $checked set)
                    (if (i32.eqz (local.get $checked))
                      (then (local.set $best (local.get $id)))
                      (else (if (call $accept (local.get $id) (local.get $dist))
                        (then (local.set $best (local.get $id))))))))
                (local.set $i
                  (i32.load (i32.add (i32.add (local.get $links) (i32.mul (local.get $c) (i32.shl (local.get $cap) (i32.const 2))))
                                     (i32.shl (local.get $i) (i32.const 2)))))
                (br $link)))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (br $next)))))

    ;; The touched words feed the result (ORed in times zero) so the first pass cannot be dropped.
    (i32.or (local.get $best) (i32.and (i32.wrap_i64 (local.get $touch)) (i32.const 0)))))

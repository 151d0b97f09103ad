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
;;   ids:     for chunk c, u32 insertion numbers in the same order, at $ids + c * $idStride; bit 31
;;            set when the stored picture has check data;
;;   chroma:  with $checked: for chunk c, the stored pictures' 16-byte chroma hashes in the same order,
;;            at $cht + c * 4 * $idStride;
;;   tail:    the hashes added since the tables were built: i64 hashes at $tail (tail slot i, insertion
;;            number $frozen + i), and per chunk a chain per bucket: i32[65536] heads at
;;            $heads + c * 262144 (newest slot, or -1), i32[$cap] links at $links + c * 4 * $cap; with
;;            $checked, slot i's chroma hash at $tailChroma + 16 i and its check-data flag (a byte) at
;;            $tailFlags + i;
;;   query:   with $checked, the query's chroma hash at $qchroma.
;;
;; first() returns the smallest insertion number among the entries of the probed buckets, tables and
;; tail, that lie within $d bits of (hi, lo), or 0xffffffff. With $checked set, such an entry counts
;; only when $confirm says so (PhashIndex's near-duplicate check): if the query ($qHas) or the entry
;; has no check data, when it lies within $only bits; otherwise when the chroma hashes differ in at
;; most $maxChroma bits and the imported accept(insertion number, distance) (the aligned comparison,
;; in JavaScript) agrees. Entries of a bucket are in insertion order, so the scan of a bucket stops at
;; the first entry no earlier than the best so far; accept is asked only about earlier ones.
;; A first pass loads the first, middle and last-plus-one hash, the first id and (with $checked) every
;; line of chroma hashes of every probed bucket:
;; independent loads, so the CPU overlaps their cache misses; the second pass, which does the work,
;; then finds the buckets in cache (128 probes into a million hashes: 50k lookups/s without that
;; pass, 130k with it).
(module
  (import "env" "accept" (func $accept (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $confirm
    (param $id i32) (param $dist i32) (param $has i32) (param $at i32) (param $qHas i32)
    (param $maxChroma i32) (param $only i32) (param $q0 i64) (param $q1 i64)
    (result i32)
    (if (result i32) (i32.and (local.get $qHas) (local.get $has))
      (then
        (if (result i32)
          (i32.le_u
            (i32.wrap_i64
              (i64.add (i64.popcnt (i64.xor (i64.load (local.get $at)) (local.get $q0)))
                       (i64.popcnt (i64.xor (i64.load offset=8 (local.get $at)) (local.get $q1)))))
            (local.get $maxChroma))
          (then (call $accept (local.get $id) (local.get $dist)))
          (else (i32.const 0))))
      (else (i32.le_u (local.get $dist) (local.get $only)))))
  (func (export "first")
    (param $probes i32) (param $n i32) (param $hi i32) (param $lo i32) (param $d i32)
    (param $off i32) (param $ent i32) (param $stride i32) (param $ids i32) (param $idStride i32)
    (param $frozen i32) (param $tail i32) (param $heads i32) (param $links i32) (param $cap i32)
    (param $checked i32) (param $qHas i32) (param $maxChroma i32) (param $only i32)
    (param $cht i32) (param $tailChroma i32) (param $tailFlags i32) (param $qchroma i32)
    (result i32)
    (local $q i64) (local $p i32) (local $w i32) (local $c i32) (local $o i32)
    (local $base i32) (local $start i32) (local $stop i32) (local $ptr i32) (local $end i32)
    (local $best i32) (local $id i32) (local $touch i64) (local $i i32) (local $dist i32)
    (local $q0 i64) (local $q1 i64) (local $idBase i32) (local $word i32) (local $k i32) (local $at i32)
    (if (local.get $checked)
      (then
        (local.set $q0 (i64.load (local.get $qchroma)))
        (local.set $q1 (i64.load offset=8 (local.get $qchroma)))))
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
              (i64.xor
                (i64.load (i32.add (local.get $base)
                  (i32.shl (i32.shr_u (i32.add (local.get $start) (local.get $stop)) (i32.const 1)) (i32.const 3))))
                (i64.extend_i32_u (i32.load (i32.add (i32.add (local.get $ids) (i32.mul (local.get $c) (local.get $idStride)))
                                                      (i32.shl (local.get $start) (i32.const 2)))))))))
        (if (local.get $checked)
          (then
            ;; The bucket's chroma hashes
            (local.set $o (i32.add (local.get $cht) (i32.shl (i32.mul (local.get $c) (local.get $idStride)) (i32.const 2))))
            ;; (its lines: 4 entries each; the first, and then every fourth entry up to the end)
            (local.set $i (local.get $start))
            (block $lines
              (loop $line
                (br_if $lines (i32.ge_u (local.get $i) (local.get $stop)))
                (local.set $touch (i64.xor (local.get $touch) (i64.load (i32.add (local.get $o) (i32.shl (local.get $i) (i32.const 4))))))
                (local.set $i (i32.add (local.get $i) (i32.const 4)))
                (br $line)))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))

    ;; Pass 2: the smallest insertion number within $d (and confirmed, with $checked).
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
        (local.set $idBase (i32.add (local.get $ids) (i32.mul (local.get $c) (local.get $idStride))))
        (local.set $k (i32.load (local.get $o)))
        (local.set $end (i32.load offset=4 (local.get $o)))
        (local.set $o (i32.add (local.get $cht) (i32.shl (i32.mul (local.get $c) (local.get $idStride)) (i32.const 2))))
        (block $bucket
          (loop $entry
            (br_if $bucket (i32.ge_u (local.get $k) (local.get $end)))
            (local.set $dist
              (i32.wrap_i64 (i64.popcnt (i64.xor (i64.load (i32.add (local.get $base) (i32.shl (local.get $k) (i32.const 3))))
                                                 (local.get $q)))))
            (if (i32.le_u (local.get $dist) (local.get $d))
              (then
                (local.set $word (i32.load (i32.add (local.get $idBase) (i32.shl (local.get $k) (i32.const 2)))))
                (local.set $id (i32.and (local.get $word) (i32.const 0x7fffffff)))
                ;; Insertion order within a bucket: nothing further on can be earlier than the best.
                (br_if $bucket (i32.ge_u (local.get $id) (local.get $best)))
                (if (i32.eqz (local.get $checked))
                  (then
                    (local.set $best (local.get $id))
                    (br $bucket)))
                ;; The check ($confirm, inlined): chroma here, the aligned stage in JavaScript.
                (if (i32.and (local.get $qHas) (i32.shr_u (local.get $word) (i32.const 31)))
                  (then
                    (local.set $at (i32.add (local.get $o) (i32.shl (local.get $k) (i32.const 4))))
                    (if (i32.le_u
                          (i32.wrap_i64
                            (i64.add (i64.popcnt (i64.xor (i64.load (local.get $at)) (local.get $q0)))
                                     (i64.popcnt (i64.xor (i64.load offset=8 (local.get $at)) (local.get $q1)))))
                          (local.get $maxChroma))
                      (then
                        (if (call $accept (local.get $id) (local.get $dist))
                          (then
                            (local.set $best (local.get $id))
                            (br $bucket))))))
                  (else
                    (if (i32.le_u (local.get $dist) (local.get $only))
                      (then
                        (local.set $best (local.get $id))
                        (br $bucket)))))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
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
                    (if (i32.eqz (local.get $checked))
                      (then (local.set $best (local.get $id)))
                      (else (if (call $confirm (local.get $id) (local.get $dist)
                                               (i32.load8_u (i32.add (local.get $tailFlags) (local.get $i)))
                                               (i32.add (local.get $tailChroma) (i32.shl (local.get $i) (i32.const 4)))
                                               (local.get $qHas) (local.get $maxChroma) (local.get $only) (local.get $q0) (local.get $q1))
                        (then (local.set $best (local.get $id))))))))
                (local.set $i
                  (i32.load (i32.add (i32.add (local.get $links) (i32.mul (local.get $c) (i32.shl (local.get $cap) (i32.const 2))))
                                     (i32.shl (local.get $i) (i32.const 2)))))
                (br $link)))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (br $next)))))

    ;; The touched words feed the result (ORed in times zero) so the first pass cannot be dropped.
    (i32.or (local.get $best) (i32.and (i32.wrap_i64 (local.get $touch)) (i32.const 0)))))

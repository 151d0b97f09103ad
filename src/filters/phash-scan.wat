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
;;   query:   with $checked, the query's chroma hash at $qchroma;
;;   candidates: with $checked, $candCap slots of 8 bytes at $cand (pass 2 and $resolve).
;;
;; first() returns the smallest insertion number among the entries of the probed buckets, tables and
;; tail, that lie within $d bits of (hi, lo), or 0xffffffff. With $checked set, such an entry counts
;; only when $confirm says so (PhashIndex's near-duplicate check): if the query ($qHas) or the entry
;; has no check data, when it lies within $only bits; otherwise when the chroma hashes differ in at
;; most $maxChroma bits and the imported accept(insertion number) (the aligned comparison,
;; in JavaScript) agrees.
;; Pass 0 loads every probed bucket's offsets and tail chain head, pass 1 the first, middle and
;; last-plus-one hash and the first id of every probed bucket: independent loads,
;; so the CPU overlaps their cache misses, and the passes that do the work find the buckets in cache
;; (128 probes into a million hashes: 50k lookups/s without pass 1, 130k with it).
;; Without a check, pass 2 scans each bucket up to its first entry within $d: entries of a bucket are
;; in insertion order, so nothing after it can be earlier. With one, pass 2 writes every entry within
;; $d to a candidate list without a branch on the distance (about 5% of the ~1,900 entries of a
;; lookup into a million random hashes), and $resolve settles the list: their chroma lines touched in
;; one loop, the chroma stage, the ids of the few that pass it, then accept asked in id order (a
;; chroma line per candidate instead of every chroma line of every probed bucket: 43k -> 65k lookups/s).
;;
;; batch() answers first() for many queries: their probes sorted by bucket key (counting sort), then
;; swept in that order, so the tables, the tail heads and the candidates' chroma lines are read in
;; address order; the candidates of all queries share one list ($settle), and the aligned stage is
;; handed to JavaScript ($drain) in lots (find one at a time 62-68k lookups/s, batches of 4,096
;; queries 113-116k, into a million hashes with the check).
(module
  (import "env" "accept" (func $accept (param i32) (result i32)))
  (import "env" "drain" (func $drain (param i32)))
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
          (then (call $accept (local.get $id)))
          (else (i32.const 0))))
      (else (i32.le_u (local.get $dist) (local.get $only)))))
  ;; The candidates' verdict: $m candidates at $cand (see pass 2 of first). Reads each one's chroma
  ;; hash, and its id only when that can matter; keeps at the front of the list the ids that wait for
  ;; accept (both have check data, chroma within $maxChroma) and takes the smallest id that needs no
  ;; more (no check data on one side: within $only bits); then asks accept about the waiting ids
  ;; below the best, smallest first, and stops at the first yes. Returns the new best.
  (func $resolve
    (param $cand i32) (param $m i32) (param $best i32) (param $ids i32) (param $idStride i32)
    (param $cht i32) (param $qHas i32) (param $maxChroma i32) (param $only i32) (param $q0 i64) (param $q1 i64)
    (result i32)
    (local $i i32) (local $j i32) (local $w i32) (local $k i32) (local $c i32) (local $dist i32)
    (local $word i32) (local $id i32) (local $has i32) (local $at i32) (local $chroma i32) (local $min i32)
    (local $touch i64)
    ;; First touch every candidate's chroma line, in a loop of independent loads and little else, so
    ;; that their cache misses overlap.
    (block $touched
      (loop $next
        (br_if $touched (i32.ge_u (local.get $i) (local.get $m)))
        (local.set $w (i32.load (i32.add (local.get $cand) (i32.shl (local.get $i) (i32.const 3)))))
        (local.set $touch
          (i64.xor (local.get $touch)
            (i64.load
              (i32.add (i32.add (local.get $cht) (i32.shl (i32.mul (i32.and (local.get $w) (i32.const 3)) (local.get $idStride)) (i32.const 2)))
                       (i32.shl (i32.shr_u (local.get $w) (i32.const 2)) (i32.const 4))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.set $i (i32.and (i32.wrap_i64 (local.get $touch)) (i32.const 0)))
    (block $read
      (loop $next
        (br_if $read (i32.ge_u (local.get $i) (local.get $m)))
        (local.set $w (i32.load (i32.add (local.get $cand) (i32.shl (local.get $i) (i32.const 3)))))
        (local.set $dist (i32.load offset=4 (i32.add (local.get $cand) (i32.shl (local.get $i) (i32.const 3)))))
        (local.set $k (i32.shr_u (local.get $w) (i32.const 2)))
        (local.set $c (i32.and (local.get $w) (i32.const 3)))
        (local.set $at
          (i32.add (i32.add (local.get $cht) (i32.shl (i32.mul (local.get $c) (local.get $idStride)) (i32.const 2)))
                   (i32.shl (local.get $k) (i32.const 4))))
        (local.set $chroma
          (i32.wrap_i64
            (i64.add (i64.popcnt (i64.xor (i64.load (local.get $at)) (local.get $q0)))
                     (i64.popcnt (i64.xor (i64.load offset=8 (local.get $at)) (local.get $q1))))))
        ;; The id (and its check-data flag) only when it can matter: most candidates fail the chroma
        ;; stage, and an entry without check data has a zero chroma hash, which is read all the same.
        (if (i32.or (i32.or (i32.le_u (local.get $chroma) (local.get $maxChroma)) (i32.le_u (local.get $dist) (local.get $only)))
                    (i32.eqz (local.get $qHas)))
          (then
            (local.set $word
              (i32.load (i32.add (i32.add (local.get $ids) (i32.mul (local.get $c) (local.get $idStride)))
                                 (i32.shl (local.get $k) (i32.const 2)))))
            (local.set $id (i32.and (local.get $word) (i32.const 0x7fffffff)))
            (local.set $has (i32.and (local.get $qHas) (i32.shr_u (local.get $word) (i32.const 31))))
            (if (local.get $has)
              (then
                ;; Waiting for accept (the chroma stage passed): written at the front of the list.
                (if (i32.le_u (local.get $chroma) (local.get $maxChroma))
                  (then
                    (i32.store (i32.add (local.get $cand) (i32.shl (local.get $j) (i32.const 3))) (local.get $id))
                    (local.set $j (i32.add (local.get $j) (i32.const 1))))))
              (else
                ;; Settled without accept: no check data on one side, within $only bits.
                (if (i32.and (i32.le_u (local.get $dist) (local.get $only)) (i32.lt_u (local.get $id) (local.get $best)))
                  (then (local.set $best (local.get $id))))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    ;; The waiting ids below the best, smallest first, until accept says yes.
    (block $done
      (loop $ask
        (local.set $min (i32.const -1))
        (local.set $i (i32.const 0))
        (block $scanned
          (loop $next
            (br_if $scanned (i32.ge_u (local.get $i) (local.get $j)))
            (local.set $id (i32.load (i32.add (local.get $cand) (i32.shl (local.get $i) (i32.const 3)))))
            (if (i32.lt_u (local.get $id) (local.get $min))
              (then (local.set $min (local.get $id))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next)))
        (br_if $done (i32.ge_u (local.get $min) (local.get $best)))
        (if (call $accept (local.get $min))
          (then (local.set $best (local.get $min)) (br $done)))
        ;; Asked and refused: every copy of that id leaves the list.
        (local.set $i (i32.const 0))
        (block $cleared
          (loop $next
            (br_if $cleared (i32.ge_u (local.get $i) (local.get $j)))
            (if (i32.eq (i32.load (i32.add (local.get $cand) (i32.shl (local.get $i) (i32.const 3)))) (local.get $min))
              (then (i32.store (i32.add (local.get $cand) (i32.shl (local.get $i) (i32.const 3))) (i32.const -1))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next)))
        (br $ask)))
    (local.get $best))
;; The candidates of a batch (see batch): $m records of 16 bytes at $cand, each the query, the entry
  ;; (entry << 2 | chunk, or tail slot | 1 << 31) and the distance. Like $resolve, but per query:
  ;; settles into $best[q] what needs no aligned stage, and writes the (query, id) pairs that wait for
  ;; it (both have check data, chroma within $maxChroma), 8 bytes each, at the front of the list, then
  ;; hands them to JavaScript ($drain), which asks accept about them in id order and lowers $best.
  (func $settle
    (param $cand i32) (param $m i32) (param $best i32) (param $qc i32) (param $qhas i32)
    (param $ids i32) (param $idStride i32) (param $cht i32) (param $frozen i32) (param $tailChroma i32)
    (param $tailFlags i32) (param $maxChroma i32) (param $only i32)
    (local $i i32) (local $j i32) (local $rec i32) (local $q i32) (local $w i32) (local $dist i32)
    (local $at i32) (local $chroma i32) (local $word i32) (local $id i32) (local $has i32)
    (local $qa i32) (local $bq i32) (local $touch i64)
    ;; Touch every candidate's chroma line first (independent loads: their misses overlap).
    (block $touched
      (loop $next
        (br_if $touched (i32.ge_u (local.get $i) (local.get $m)))
        (local.set $w (i32.load (i32.add (local.get $cand) (i32.shl (local.get $i) (i32.const 3)))))
        (local.set $touch
          (i64.xor (local.get $touch)
            (i64.load
              (select
                (i32.add (local.get $tailChroma) (i32.shl (i32.and (local.get $w) (i32.const 0x7fffffff)) (i32.const 4)))
                (i32.add (i32.add (local.get $cht) (i32.shl (i32.mul (i32.and (local.get $w) (i32.const 3)) (local.get $idStride)) (i32.const 2)))
                         (i32.shl (i32.shr_u (local.get $w) (i32.const 2)) (i32.const 4)))
                (i32.shr_u (local.get $w) (i32.const 31))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.set $i (i32.and (i32.wrap_i64 (local.get $touch)) (i32.const 0)))
    (block $read
      (loop $next
        (br_if $read (i32.ge_u (local.get $i) (local.get $m)))
        (local.set $rec (i32.add (local.get $cand) (i32.shl (local.get $i) (i32.const 3))))
        (local.set $w (i32.load (local.get $rec)))
        (local.set $q (i32.load offset=4 (local.get $rec)))
        (local.set $dist (i32.and (local.get $q) (i32.const 255)))
        (local.set $q (i32.shr_u (local.get $q) (i32.const 8)))
        (if (i32.shr_u (local.get $w) (i32.const 31))
          (then (local.set $at (i32.add (local.get $tailChroma) (i32.shl (i32.and (local.get $w) (i32.const 0x7fffffff)) (i32.const 4)))))
          (else
            (local.set $at
              (i32.add (i32.add (local.get $cht) (i32.shl (i32.mul (i32.and (local.get $w) (i32.const 3)) (local.get $idStride)) (i32.const 2)))
                       (i32.shl (i32.shr_u (local.get $w) (i32.const 2)) (i32.const 4))))))
        (local.set $qa (i32.add (local.get $qc) (i32.shl (local.get $q) (i32.const 4))))
        (local.set $chroma
          (i32.wrap_i64
            (i64.add (i64.popcnt (i64.xor (i64.load (local.get $at)) (i64.load (local.get $qa))))
                     (i64.popcnt (i64.xor (i64.load offset=8 (local.get $at)) (i64.load offset=8 (local.get $qa)))))))
        (local.set $has (i32.load8_u (i32.add (local.get $qhas) (local.get $q))))
        (if (i32.or (i32.or (i32.le_u (local.get $chroma) (local.get $maxChroma)) (i32.le_u (local.get $dist) (local.get $only)))
                    (i32.eqz (local.get $has)))
          (then
            (if (i32.shr_u (local.get $w) (i32.const 31))
              (then
                (local.set $word
                  (i32.or (i32.add (local.get $frozen) (i32.and (local.get $w) (i32.const 0x7fffffff)))
                          (i32.shl (i32.load8_u (i32.add (local.get $tailFlags) (i32.and (local.get $w) (i32.const 0x7fffffff))))
                                   (i32.const 31)))))
              (else
                (local.set $word
                  (i32.load (i32.add (i32.add (local.get $ids) (i32.mul (i32.and (local.get $w) (i32.const 3)) (local.get $idStride)))
                                     (i32.shl (i32.shr_u (local.get $w) (i32.const 2)) (i32.const 2)))))))
            (local.set $id (i32.and (local.get $word) (i32.const 0x7fffffff)))
            (local.set $has (i32.and (local.get $has) (i32.shr_u (local.get $word) (i32.const 31))))
            (if (local.get $has)
              (then
                (if (i32.le_u (local.get $chroma) (local.get $maxChroma))
                  (then
                    (i32.store (i32.add (local.get $cand) (i32.shl (local.get $j) (i32.const 3))) (local.get $q))
                    (i32.store offset=4 (i32.add (local.get $cand) (i32.shl (local.get $j) (i32.const 3))) (local.get $id))
                    (local.set $j (i32.add (local.get $j) (i32.const 1))))))
              (else
                (local.set $bq (i32.add (local.get $best) (i32.shl (local.get $q) (i32.const 2))))
                (if (i32.and (i32.le_u (local.get $dist) (local.get $only)) (i32.lt_u (local.get $id) (i32.load (local.get $bq))))
                  (then (i32.store (local.get $bq) (local.get $id))))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (if (local.get $j) (then (call $drain (local.get $j)))))
  ;; Many lookups at once: the answers of first() for $nq queries, written to u32 $best[q], with the
  ;; probes sorted by bucket so that the tables are read in address order rather than at random
  ;; (a batch of a few thousand queries probes most buckets of a million hashes). In: $np probes,
  ;; u32 bucket keys ((chunk << 16) | value) at $keys and their query numbers at $qidx; per query its
  ;; hash (i64 at $qh + 8 q), chroma hash ($qc + 16 q) and whether it has check data (byte $qhas + q).
  ;; Scratch: u32[262145] at $counts, 8 bytes a probe at $sorted, $candCap candidates of 16 bytes at
  ;; $cand. With a check, the aligned stage is asked through $drain (see $settle).
  (func (export "batch")
    (param $nq i32) (param $np i32) (param $keys i32) (param $qidx i32) (param $counts i32) (param $sorted i32)
    (param $qh i32) (param $qc i32) (param $qhas i32) (param $best i32) (param $d i32)
    (param $off i32) (param $ent i32) (param $stride i32) (param $ids i32) (param $idStride i32)
    (param $frozen i32) (param $tail i32) (param $heads i32) (param $links i32) (param $cap i32)
    (param $checked i32) (param $maxChroma i32) (param $only i32)
    (param $cht i32) (param $tailChroma i32) (param $tailFlags i32) (param $cand i32) (param $candCap i32)
    (local $i i32) (local $key i32) (local $at i32) (local $q i32) (local $c i32) (local $o i32)
    (local $base i32) (local $k i32) (local $end i32) (local $hash i64) (local $dist i32) (local $m i32)
    (local $id i32) (local $bq i32) (local $idBase i32) (local $rec i32) (local $links_c i32)
    (local $ptr i32) (local $pend i32) (local $lim i32) (local $qw i64) (local $d64 i64) (local $dist64 i64) (local $dist2 i64)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $nq)))
      (i32.store (i32.add (local.get $best) (i32.shl (local.get $i) (i32.const 2))) (i32.const -1))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    ;; Counting sort of the probes by bucket key.
    (local.set $i (i32.const 0))
    (block $done (loop $next
      (br_if $done (i32.gt_u (local.get $i) (i32.const 262144)))
      (i32.store (i32.add (local.get $counts) (i32.shl (local.get $i) (i32.const 2))) (i32.const 0))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.set $i (i32.const 0))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $np)))
      (local.set $at
        (i32.add (local.get $counts)
                 (i32.shl (i32.add (i32.load (i32.add (local.get $keys) (i32.shl (local.get $i) (i32.const 2)))) (i32.const 1))
                          (i32.const 2))))
      (i32.store (local.get $at) (i32.add (i32.load (local.get $at)) (i32.const 1)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.set $i (i32.const 1))
    (block $done (loop $next
      (br_if $done (i32.gt_u (local.get $i) (i32.const 262144)))
      (local.set $at (i32.add (local.get $counts) (i32.shl (local.get $i) (i32.const 2))))
      (i32.store (local.get $at) (i32.add (i32.load (local.get $at)) (i32.load offset=0 (i32.sub (local.get $at) (i32.const 4)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.set $i (i32.const 0))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $np)))
      (local.set $key (i32.load (i32.add (local.get $keys) (i32.shl (local.get $i) (i32.const 2)))))
      (local.set $at (i32.add (local.get $counts) (i32.shl (local.get $key) (i32.const 2))))
      (local.set $o (i32.add (local.get $sorted) (i32.shl (i32.load (local.get $at)) (i32.const 3))))
      (i32.store (local.get $at) (i32.add (i32.load (local.get $at)) (i32.const 1)))
      (i32.store (local.get $o) (local.get $key))
      (i32.store offset=4 (local.get $o) (i32.load (i32.add (local.get $qidx) (i32.shl (local.get $i) (i32.const 2)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    ;; The sweep: every probe in bucket order, its table bucket and then its tail chain.
    (local.set $i (i32.const 0))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $np)))
      (local.set $key (i32.load (i32.add (local.get $sorted) (i32.shl (local.get $i) (i32.const 3)))))
      (local.set $q (i32.load offset=4 (i32.add (local.get $sorted) (i32.shl (local.get $i) (i32.const 3)))))
      (local.set $hash (i64.load (i32.add (local.get $qh) (i32.shl (local.get $q) (i32.const 3)))))
      (local.set $c (i32.shr_u (local.get $key) (i32.const 16)))
      (local.set $o
        (i32.add (i32.add (local.get $off) (i32.mul (local.get $c) (i32.const 262148)))
                 (i32.shl (i32.and (local.get $key) (i32.const 65535)) (i32.const 2))))
      (local.set $base (i32.add (local.get $ent) (i32.mul (local.get $c) (local.get $stride))))
      (local.set $k (i32.load (local.get $o)))
      (local.set $end (i32.load offset=4 (local.get $o)))
      (local.set $bq (i32.add (local.get $best) (i32.shl (local.get $q) (i32.const 2))))
      (if (local.get $checked)
        (then
          ;; Each entry within $d becomes an 8-byte record (entry << 2 | chunk, then query << 8 |
          ;; distance), written whatever the distance and kept by moving the pointer on; in pieces
          ;; that fit the list, which is settled when full.
          (local.set $ptr (i32.add (local.get $base) (i32.shl (local.get $k) (i32.const 3))))
          (local.set $pend (i32.add (local.get $base) (i32.shl (local.get $end) (i32.const 3))))
          (local.set $qw
            (i64.or (i64.shl (i64.extend_i32_u (local.get $q)) (i64.const 40))
                    (i64.extend_i32_u (i32.or (i32.shl (local.get $k) (i32.const 2)) (local.get $c)))))
          (local.set $d64 (i64.extend_i32_u (local.get $d)))
          (block $bucket (loop $piece
            (br_if $bucket (i32.ge_u (local.get $ptr) (local.get $pend)))
            (if (i32.eq (local.get $m) (local.get $candCap))
              (then
                (call $settle (local.get $cand) (local.get $m) (local.get $best) (local.get $qc) (local.get $qhas)
                              (local.get $ids) (local.get $idStride) (local.get $cht) (local.get $frozen)
                              (local.get $tailChroma) (local.get $tailFlags) (local.get $maxChroma) (local.get $only))
                (local.set $m (i32.const 0))))
            (local.set $rec (i32.add (local.get $cand) (i32.shl (local.get $m) (i32.const 3))))
            (local.set $lim
              (select (local.get $pend)
                      (i32.add (local.get $ptr) (i32.shl (i32.sub (local.get $candCap) (local.get $m)) (i32.const 3)))
                      (i32.le_u (i32.sub (local.get $pend) (local.get $ptr))
                                (i32.shl (i32.sub (local.get $candCap) (local.get $m)) (i32.const 3)))))
            ;; Two entries a turn while two are left.
            (block $pairs (loop $two
              (br_if $pairs (i32.ge_u (i32.add (local.get $ptr) (i32.const 8)) (local.get $lim)))
              (local.set $dist64 (i64.popcnt (i64.xor (i64.load (local.get $ptr)) (local.get $hash))))
              (local.set $dist2 (i64.popcnt (i64.xor (i64.load offset=8 (local.get $ptr)) (local.get $hash))))
              (i64.store (local.get $rec) (i64.or (local.get $qw) (i64.shl (local.get $dist64) (i64.const 32))))
              (local.set $rec (i32.add (local.get $rec) (i32.shl (i64.le_u (local.get $dist64) (local.get $d64)) (i32.const 3))))
              (i64.store (local.get $rec) (i64.add (i64.or (local.get $qw) (i64.shl (local.get $dist2) (i64.const 32))) (i64.const 4)))
              (local.set $rec (i32.add (local.get $rec) (i32.shl (i64.le_u (local.get $dist2) (local.get $d64)) (i32.const 3))))
              (local.set $qw (i64.add (local.get $qw) (i64.const 8)))
              (local.set $ptr (i32.add (local.get $ptr) (i32.const 16)))
              (br $two)))
            (block $filled (loop $entry
              (br_if $filled (i32.ge_u (local.get $ptr) (local.get $lim)))
              (local.set $dist64 (i64.popcnt (i64.xor (i64.load (local.get $ptr)) (local.get $hash))))
              (i64.store (local.get $rec) (i64.or (local.get $qw) (i64.shl (local.get $dist64) (i64.const 32))))
              (local.set $rec (i32.add (local.get $rec) (i32.shl (i64.le_u (local.get $dist64) (local.get $d64)) (i32.const 3))))
              (local.set $qw (i64.add (local.get $qw) (i64.const 4)))
              (local.set $ptr (i32.add (local.get $ptr) (i32.const 8)))
              (br $entry)))
            (local.set $m (i32.shr_u (i32.sub (local.get $rec) (local.get $cand)) (i32.const 3)))
            (br $piece))))
        (else
          ;; Without a check: the first entry within $d ends the bucket (entries are in insertion order).
          (local.set $idBase (i32.add (local.get $ids) (i32.mul (local.get $c) (local.get $idStride))))
          (block $bucket (loop $entry
            (br_if $bucket (i32.ge_u (local.get $k) (local.get $end)))
            (if (i32.le_u
                  (i32.wrap_i64 (i64.popcnt (i64.xor (i64.load (i32.add (local.get $base) (i32.shl (local.get $k) (i32.const 3))))
                                                     (local.get $hash))))
                  (local.get $d))
              (then
                (local.set $id (i32.and (i32.load (i32.add (local.get $idBase) (i32.shl (local.get $k) (i32.const 2))))
                                        (i32.const 0x7fffffff)))
                (if (i32.lt_u (local.get $id) (i32.load (local.get $bq)))
                  (then (i32.store (local.get $bq) (local.get $id))))
                (br $bucket)))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $entry)))))
      ;; The tail chain of the same bucket.
      (local.set $links_c (i32.add (local.get $links) (i32.mul (local.get $c) (i32.shl (local.get $cap) (i32.const 2)))))
      (local.set $k
        (i32.load (i32.add (i32.add (local.get $heads) (i32.shl (local.get $c) (i32.const 18)))
                           (i32.shl (i32.and (local.get $key) (i32.const 65535)) (i32.const 2)))))
      (block $chained (loop $link
        (br_if $chained (i32.lt_s (local.get $k) (i32.const 0)))
        (local.set $dist
          (i32.wrap_i64 (i64.popcnt (i64.xor (i64.load (i32.add (local.get $tail) (i32.shl (local.get $k) (i32.const 3))))
                                             (local.get $hash)))))
        (if (i32.le_u (local.get $dist) (local.get $d))
          (then
            (if (local.get $checked)
              (then
                (if (i32.eq (local.get $m) (local.get $candCap))
                  (then
                    (call $settle (local.get $cand) (local.get $m) (local.get $best) (local.get $qc) (local.get $qhas)
                                  (local.get $ids) (local.get $idStride) (local.get $cht) (local.get $frozen)
                                  (local.get $tailChroma) (local.get $tailFlags) (local.get $maxChroma) (local.get $only))
                    (local.set $m (i32.const 0))))
                (local.set $rec (i32.add (local.get $cand) (i32.shl (local.get $m) (i32.const 3))))
                (i32.store (local.get $rec) (i32.or (local.get $k) (i32.const 0x80000000)))
                (i32.store offset=4 (local.get $rec) (i32.or (i32.shl (local.get $q) (i32.const 8)) (local.get $dist)))
                (local.set $m (i32.add (local.get $m) (i32.const 1))))
              (else
                (local.set $id (i32.add (local.get $frozen) (local.get $k)))
                (if (i32.lt_u (local.get $id) (i32.load (local.get $bq)))
                  (then (i32.store (local.get $bq) (local.get $id))))))))
        (local.set $k (i32.load (i32.add (local.get $links_c) (i32.shl (local.get $k) (i32.const 2)))))
        (br $link)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (if (i32.and (local.get $checked) (i32.ne (local.get $m) (i32.const 0)))
      (then
        (call $settle (local.get $cand) (local.get $m) (local.get $best) (local.get $qc) (local.get $qhas)
                      (local.get $ids) (local.get $idStride) (local.get $cht) (local.get $frozen)
                      (local.get $tailChroma) (local.get $tailFlags) (local.get $maxChroma) (local.get $only)))))
  (func (export "first")
    (param $probes i32) (param $n i32) (param $hi i32) (param $lo i32) (param $d i32)
    (param $off i32) (param $ent i32) (param $stride i32) (param $ids i32) (param $idStride i32)
    (param $frozen i32) (param $tail i32) (param $heads i32) (param $links i32) (param $cap i32)
    (param $checked i32) (param $qHas i32) (param $maxChroma i32) (param $only i32)
    (param $cht i32) (param $tailChroma i32) (param $tailFlags i32) (param $qchroma i32)
    (param $cand i32) (param $candCap i32)
    (result i32)
    (local $q i64) (local $p i32) (local $w i32) (local $c i32) (local $o i32)
    (local $base i32) (local $start i32) (local $stop i32) (local $end i32)
    (local $best i32) (local $id i32) (local $touch i64) (local $i i32) (local $dist i32)
    (local $q0 i64) (local $q1 i64) (local $idBase i32) (local $k i32) (local $at i32)
    (local $m i32)
    (if (local.get $checked)
      (then
        (local.set $q0 (i64.load (local.get $qchroma)))
        (local.set $q1 (i64.load offset=8 (local.get $qchroma)))))
    (local.set $q
      (i64.or (i64.shl (i64.extend_i32_u (local.get $hi)) (i64.const 32)) (i64.extend_i32_u (local.get $lo))))
    (local.set $best (i32.const -1))

    ;; Pass 0: touch every probed bucket's offsets (and its tail chain's head).
    (block $touched
      (loop $next
        (br_if $touched (i32.ge_u (local.get $p) (local.get $n)))
        (local.set $w (i32.load (i32.add (local.get $probes) (i32.shl (local.get $p) (i32.const 2)))))
        (local.set $c (i32.shr_u (local.get $w) (i32.const 16)))
        (local.set $touch
          (i64.xor (local.get $touch)
            (i64.extend_i32_u
              (i32.xor
                (i32.load (i32.add (i32.add (local.get $off) (i32.mul (local.get $c) (i32.const 262148)))
                                   (i32.shl (i32.and (local.get $w) (i32.const 65535)) (i32.const 2))))
                (i32.load (i32.add (i32.add (local.get $heads) (i32.shl (local.get $c) (i32.const 18)))
                                   (i32.shl (i32.and (local.get $w) (i32.const 65535)) (i32.const 2))))))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.set $p (i32.const 0))

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
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))

    ;; Pass 2 with a check: every entry within $d goes to the candidate list ($cand: per candidate a
    ;; u32 (entry << 2 | chunk) and its distance), written without a branch on the distance; $resolve
    ;; settles the list (and, should it fill, settles it and starts it again).
    (local.set $p (i32.const 0))
    (if (local.get $checked)
      (then
        (block $collected
          (loop $next
            (br_if $collected (i32.ge_u (local.get $p) (local.get $n)))
            (local.set $w (i32.load (i32.add (local.get $probes) (i32.shl (local.get $p) (i32.const 2)))))
            (local.set $c (i32.shr_u (local.get $w) (i32.const 16)))
            (local.set $o
              (i32.add (i32.add (local.get $off) (i32.mul (local.get $c) (i32.const 262148)))
                       (i32.shl (i32.and (local.get $w) (i32.const 65535)) (i32.const 2))))
            (local.set $base (i32.add (local.get $ent) (i32.mul (local.get $c) (local.get $stride))))
            (local.set $k (i32.load (local.get $o)))
            (local.set $end (i32.load offset=4 (local.get $o)))
            (block $bucket
              (loop $entry
                (br_if $bucket (i32.ge_u (local.get $k) (local.get $end)))
                (local.set $dist
                  (i32.wrap_i64 (i64.popcnt (i64.xor (i64.load (i32.add (local.get $base) (i32.shl (local.get $k) (i32.const 3))))
                                                     (local.get $q)))))
                (local.set $at (i32.add (local.get $cand) (i32.shl (local.get $m) (i32.const 3))))
                (i32.store (local.get $at) (i32.or (i32.shl (local.get $k) (i32.const 2)) (local.get $c)))
                (i32.store offset=4 (local.get $at) (local.get $dist))
                (local.set $m (i32.add (local.get $m) (i32.le_u (local.get $dist) (local.get $d))))
                (if (i32.eq (local.get $m) (local.get $candCap))
                  (then
                    (local.set $best
                      (call $resolve (local.get $cand) (local.get $m) (local.get $best) (local.get $ids) (local.get $idStride)
                                     (local.get $cht) (local.get $qHas) (local.get $maxChroma) (local.get $only)
                                     (local.get $q0) (local.get $q1)))
                    (local.set $m (i32.const 0))))
                (local.set $k (i32.add (local.get $k) (i32.const 1)))
                (br $entry)))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (br $next)))
        (local.set $best
          (call $resolve (local.get $cand) (local.get $m) (local.get $best) (local.get $ids) (local.get $idStride)
                         (local.get $cht) (local.get $qHas) (local.get $maxChroma) (local.get $only)
                         (local.get $q0) (local.get $q1))))
      (else
        ;; Pass 2 without a check: the smallest insertion number within $d; in each bucket, the first
        ;; entry within $d ends the bucket (nothing further on is earlier).
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
            (block $bucket
              (loop $entry
                (br_if $bucket (i32.ge_u (local.get $k) (local.get $end)))
                (local.set $dist
                  (i32.wrap_i64 (i64.popcnt (i64.xor (i64.load (i32.add (local.get $base) (i32.shl (local.get $k) (i32.const 3))))
                                                     (local.get $q)))))
                (if (i32.le_u (local.get $dist) (local.get $d))
                  (then
                    (local.set $id (i32.load (i32.add (local.get $idBase) (i32.shl (local.get $k) (i32.const 2)))))
                    (if (i32.lt_u (local.get $id) (local.get $best)) (then (local.set $best (local.get $id))))
                    (br $bucket)))
                (local.set $k (i32.add (local.get $k) (i32.const 1)))
                (br $entry)))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (br $next)))))

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

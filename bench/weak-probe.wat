;; The bucket scan of bench/phash-index.ts --weak-probes, in WebAssembly for its 64-bit popcount
;; (one instruction here; two 32-bit bit-twiddling popcounts in JavaScript). Compiled at the bench's
;; start with wabt (a devDependency).
;;
;; Memory, laid out by the bench:
;;   offsets: for chunk c (0..3), u32[65537] at $off + c * 262148: bucket v's entries are
;;            offsets[v] .. offsets[v + 1] - 1;
;;   entries: for chunk c, the stored hashes as i64 (hi << 32 | lo), sorted by chunk value, at
;;            $ent + c * $stride, followed by at least one spare i64;
;;   probes:  $n u32 words at $probes, each (chunk << 16) | bucket value.
;;
;; count() returns how many entries of the probed buckets lie within $d bits of (hi, lo). A first
;; pass loads the first, middle and last-plus-one entry of every probed bucket: the loads are
;; independent, so the CPU overlaps their cache misses, and the second pass, which does the work,
;; finds the buckets in cache (measured: 50k lookups/s without that pass, 80k with the first and
;; last entries, 130k with the middle one too, 128 probes into a million hashes).
(module
  (memory (export "memory") 1)
  (func (export "count")
    (param $probes i32) (param $n i32) (param $hi i32) (param $lo i32) (param $d i32)
    (param $off i32) (param $ent i32) (param $stride i32)
    (result i32)
    (local $q i64) (local $p i32) (local $w i32) (local $c i32) (local $o i32)
    (local $base i32) (local $start i32) (local $stop i32) (local $ptr i32) (local $end i32)
    (local $found i32) (local $touch i64)
    (local.set $q
      (i64.or (i64.shl (i64.extend_i32_u (local.get $hi)) (i64.const 32)) (i64.extend_i32_u (local.get $lo))))

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

    ;; Pass 2: count the entries within $d.
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
        (local.set $ptr (i32.add (local.get $base) (i32.shl (i32.load (local.get $o)) (i32.const 3))))
        (local.set $end (i32.add (local.get $base) (i32.shl (i32.load offset=4 (local.get $o)) (i32.const 3))))
        (block $bucket
          (loop $entry
            (br_if $bucket (i32.ge_u (local.get $ptr) (local.get $end)))
            (local.set $found
              (i32.add (local.get $found)
                (i64.le_u (i64.popcnt (i64.xor (i64.load (local.get $ptr)) (local.get $q)))
                          (i64.extend_i32_u (local.get $d)))))
            (local.set $ptr (i32.add (local.get $ptr) (i32.const 8)))
            (br $entry)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))

    ;; The touched words feed the result (times zero) so the first pass cannot be dropped.
    (i32.add (local.get $found) (i32.and (i32.wrap_i64 (local.get $touch)) (i32.const 0)))))

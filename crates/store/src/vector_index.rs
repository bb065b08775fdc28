//! SQLite's first pass of vector search: a store's vectors as bits, held in memory and
//! scanned by Hamming distance (a popcount per 64 dimensions), rebuilt from the `vec0`
//! table whenever the store's `vectors_version` moved.
//!
//! Why not `vec0`'s own k-nearest query: it selects the k best of every block of vectors
//! by rescanning the block k times, so its cost grows with N × k; hybrid search asks for
//! hundreds of candidates (then scored exactly from the float vectors), which made it the
//! bottleneck. A scan here is N popcounts and one partial sort.
//!
//! Invariants:
//! - Every write that changes a store's chunks or vectors bumps `vectors_version` in its
//!   own transaction, so a search never uses bits older than the last committed write.
//! - An index is built for one (store, dimension) pair and replaced whole.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// The bits of one store's vectors of one dimension.
pub(crate) struct BitIndex {
    pub version: i64,
    words: usize,
    ids: Vec<i64>,
    bits: Vec<u64>,
}

impl BitIndex {
    /// Builds an index from `(chunk id, bits)` rows (`vec_quantize_binary` output: bit i
    /// set when dimension i is positive, least significant bit first).
    pub fn new(version: i64, dims: usize, rows: Vec<(i64, Vec<u8>)>) -> BitIndex {
        let words = dims.div_ceil(64);
        let mut ids = Vec::with_capacity(rows.len());
        let mut bits = Vec::with_capacity(rows.len() * words);
        for (id, bytes) in rows {
            ids.push(id);
            for word in 0..words {
                let mut value = 0u64;
                for byte in 0..8 {
                    let b = bytes.get(word * 8 + byte).copied().unwrap_or(0);
                    value |= u64::from(b) << (byte * 8);
                }
                bits.push(value);
            }
        }
        BitIndex {
            version,
            words,
            ids,
            bits,
        }
    }

    /// The `k` chunks whose bits are closest to `query`'s, nearest first.
    pub fn nearest(&self, query: &[f32], k: usize) -> Vec<i64> {
        let mut q = vec![0u64; self.words];
        for (i, x) in query.iter().enumerate() {
            if *x > 0.0 {
                q[i / 64] |= 1 << (i % 64);
            }
        }
        let mut scored: Vec<(u32, i64)> = self
            .ids
            .iter()
            .enumerate()
            .map(|(n, id)| {
                let row = &self.bits[n * self.words..(n + 1) * self.words];
                let distance = row.iter().zip(&q).map(|(a, b)| (a ^ b).count_ones()).sum();
                (distance, *id)
            })
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        if k < scored.len() {
            scored.select_nth_unstable(k - 1);
            scored.truncate(k);
        }
        scored.sort_unstable();
        scored.into_iter().map(|(_, id)| id).collect()
    }
}

/// The indexes of this process, by (store, dimension).
#[derive(Default)]
pub(crate) struct BitIndexes(Mutex<HashMap<(i64, i32), Arc<BitIndex>>>);

impl BitIndexes {
    pub fn get(&self, store: i64, dims: i32, version: i64) -> Option<Arc<BitIndex>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(store, dims))
            .filter(|index| index.version == version)
            .cloned()
    }

    pub fn put(&self, store: i64, dims: i32, index: Arc<BitIndex>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert((store, dims), index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(v: &[f32]) -> Vec<u8> {
        let mut out = vec![0u8; v.len().div_ceil(8)];
        for (i, x) in v.iter().enumerate() {
            if *x > 0.0 {
                out[i / 8] |= 1 << (i % 8);
            }
        }
        out
    }

    #[test]
    fn nearest_by_hamming_distance() {
        let a: Vec<f32> = (0..128)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let mut b = a.clone();
        for x in b.iter_mut().take(10) {
            *x = -*x;
        }
        let c: Vec<f32> = a.iter().map(|x| -x).collect();
        let index = BitIndex::new(1, 128, vec![(1, bits(&c)), (2, bits(&b)), (3, bits(&a))]);
        assert_eq!(index.nearest(&a, 2), [3, 2]);
        assert_eq!(index.nearest(&a, 10), [3, 2, 1]);
        assert_eq!(index.nearest(&c, 1), [1]);
    }
}

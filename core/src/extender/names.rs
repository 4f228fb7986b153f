//! Node name → position, built for the filter's hot loop.
//!
//! kube-scheduler sends every candidate node by name on each request, so
//! resolving thousands of names is most of a filter's cost. A `HashMap<String,
//! _>` makes each lookup chase a pointer to the key's own heap allocation to
//! compare it; here the names live back to back in one arena (a few hundred
//! KiB for 10,000 nodes, cache-resident) and the table maps a 64-bit hash to
//! the position. Every hit is confirmed against the arena, so a hash collision
//! can never resolve a name to the wrong node: colliding names go to a small
//! exact map instead.
//!
//! kube-scheduler lists nodes in the same order request after request (its
//! snapshot's order, less the nodes its own filters dropped), so each
//! position also remembers which position followed it last time: when the
//! guess names the same bytes, the lookup is one sequential arena read and
//! no hashing. A wrong guess costs one short compare; guesses are hints
//! (relaxed atomics, updated under the view's read lock) and never decide.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};

/// Positions of node names.
#[derive(Debug, Default)]
pub(crate) struct NameIndex {
    /// Hash → the position and where its name lies in the arena (so a
    /// lookup touches the table and the arena only).
    by_hash: HashMap<u64, Slot, BuildHasherDefault<Identity>>,
    /// Names whose hash another name already holds (practically never).
    collided: HashMap<String, usize>,
    arena: Vec<u8>,
    /// (offset, length) in `arena` of the name at each position.
    spans: Vec<(u32, u32)>,
    /// Arena bytes no live name uses (compacted when they dominate).
    garbage: usize,
    /// Per position: the position that followed it in the last request.
    next: Vec<AtomicU32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    pos: usize,
    off: u32,
    len: u32,
}

impl NameIndex {
    pub fn get(&self, name: &str) -> Option<&usize> {
        let h = hash(name.as_bytes());
        if let Some(s) = self.by_hash.get(&h)
            && s.len as usize == name.len()
            && same_bytes(&self.arena[s.off as usize..(s.off + s.len) as usize], name.as_bytes())
        {
            return Some(&s.pos);
        }
        if self.collided.is_empty() {
            None
        } else {
            self.collided.get(name)
        }
    }

    /// The position of `name`, given the position of the name before it in
    /// the same request (`None` for the first or an unknown one).
    pub fn get_after(&self, prev: Option<usize>, name: &str) -> Option<usize> {
        let Some(p) = prev else {
            return self.get(name).copied();
        };
        let guess = self.next.get(p).map_or(u32::MAX, |g| g.load(Ordering::Relaxed)) as usize;
        if let Some(&(off, len)) = self.spans.get(guess)
            && len as usize == name.len()
            && same_bytes(&self.arena[off as usize..(off + len) as usize], name.as_bytes())
        {
            return Some(guess);
        }
        let found = self.get(name).copied();
        if let (Some(i), Some(slot)) = (found, self.next.get(p)) {
            slot.store(i as u32, Ordering::Relaxed);
        }
        found
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn name(&self, i: usize) -> &[u8] {
        self.spans
            .get(i)
            .map_or(&[][..], |&(o, l)| &self.arena[o as usize..(o + l) as usize])
    }

    /// Adds `name` at position `i` (positions are dense: `i` is the next one
    /// or an existing one being renamed by a move).
    pub fn insert(&mut self, name: &str, i: usize) {
        if self.spans.len() <= i {
            self.spans.resize(i + 1, (0, 0));
            self.next.resize_with(i + 1, || AtomicU32::new(u32::MAX));
        } else {
            // A rename in place: the old name stops resolving.
            let old = self.name(i).to_vec();
            let ho = hash(&old);
            if self.by_hash.get(&ho).is_some_and(|s| s.pos == i) {
                self.by_hash.remove(&ho);
            } else if let Ok(o) = std::str::from_utf8(&old)
                && self.collided.get(o) == Some(&i)
            {
                self.collided.remove(o);
            }
            self.garbage += old.len();
        }
        let off = self.arena.len() as u32;
        self.arena.extend_from_slice(name.as_bytes());
        self.spans[i] = (off, name.len() as u32);
        let h = hash(name.as_bytes());
        let slot = Slot {
            pos: i,
            off,
            len: name.len() as u32,
        };
        match self.by_hash.get(&h).copied() {
            Some(s) if s.pos != i && self.name(s.pos) != name.as_bytes() => {
                self.collided.insert(name.to_string(), i);
            }
            _ => {
                self.by_hash.insert(h, slot);
            }
        }
    }

    /// Removes `name` the way `Vec::swap_remove` removes its node: the name
    /// at the last position moves to the freed one. Returns the freed one.
    pub fn remove(&mut self, name: &str) -> Option<usize> {
        let i = *self.get(name)?;
        let h = hash(name.as_bytes());
        if self.by_hash.get(&h).map(|s| s.pos) == Some(i) {
            self.by_hash.remove(&h);
        } else {
            self.collided.remove(name);
        }
        self.garbage += name.len();
        // The last position's span moves to `i` when the caller swaps.
        let last = self.spans.len() - 1;
        self.spans.swap(i, last);
        self.spans.pop();
        self.next.swap_remove(i);
        if i < self.spans.len() {
            // The moved name now lives at `i`.
            let moved = self.name(i).to_vec();
            let hm = hash(&moved);
            if let Some(s) = self.by_hash.get_mut(&hm)
                && s.pos == last
            {
                s.pos = i;
            } else if let Ok(s) = std::str::from_utf8(&moved)
                && let Some(p) = self.collided.get_mut(s)
            {
                *p = i;
            }
        }
        if self.garbage > 4096 && self.garbage * 2 > self.arena.len() {
            self.compact();
        }
        Some(i)
    }

    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for s in &mut self.spans {
            let (o, l) = (s.0 as usize, s.1 as usize);
            let off = arena.len() as u32;
            arena.extend_from_slice(&self.arena[o..o + l]);
            s.0 = off;
        }
        self.arena = arena;
        self.garbage = 0;
        for slot in self.by_hash.values_mut() {
            if let Some(&(off, _)) = self.spans.get(slot.pos) {
                slot.off = off;
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.spans.len()
    }
}

/// Byte equality of two equally long short slices without a libc call.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let word = |c: &[u8]| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(w)
    };
    let (mut x, mut y) = (a.chunks(8), b.chunks(8));
    loop {
        match (x.next(), y.next()) {
            (Some(p), Some(q)) if p.len() == q.len() && word(p) == word(q) => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A fast 64-bit string hash with a full final mix (the table uses its bits
/// as they are). Node names are short; words are folded 8 bytes at a time.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    }
    // murmur3's finalizer: every input bit reaches every output bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The key is already a hash.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash(bytes);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_keep_positions_dense() {
        let mut ix = NameIndex::default();
        let mut names: Vec<String> = (0..5000).map(|i| format!("node-{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            ix.insert(n, i);
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(ix.get(n), Some(&i));
        }
        assert_eq!(ix.get("node-5000"), None);
        assert_eq!(ix.get("node-"), None);
        // Remove as the view does (swap_remove), many times: positions stay dense
        // and every remaining name resolves to its new position.
        for k in (0..5000).step_by(3) {
            let name = format!("node-{k}");
            let i = names.iter().position(|n| *n == name).unwrap();
            assert_eq!(ix.remove(&name), Some(i));
            names.swap_remove(i);
        }
        assert_eq!(ix.len(), names.len());
        for (i, n) in names.iter().enumerate() {
            assert_eq!(ix.get(n), Some(&i), "{n}");
        }
        assert_eq!(ix.get("node-0"), None);
        // Re-adding works and arena garbage was compacted along the way.
        ix.insert("node-0", names.len());
        assert_eq!(ix.get("node-0"), Some(&names.len()));
        assert!(ix.garbage * 2 <= ix.arena.len() || ix.garbage <= 4096);
    }

    #[test]
    fn colliding_hashes_never_resolve_to_the_wrong_node() {
        // Force a collision by planting a different name under the same hash.
        let mut ix = NameIndex::default();
        ix.insert("a", 0);
        let h = hash(b"b");
        let a = ix.by_hash[&hash(b"a")];
        ix.by_hash.insert(h, a); // "b" hashes to position 0, which holds "a"
        assert_eq!(ix.get("b"), None, "a hit is confirmed against the name");
        ix.insert("b", 1);
        assert_eq!(ix.get("b"), Some(&1));
        assert_eq!(ix.get("a"), Some(&0));
        assert_eq!(ix.remove("b"), Some(1));
        assert_eq!(ix.get("b"), None);
        assert_eq!(ix.get("a"), Some(&0));
    }

    #[test]
    fn a_rename_in_place_forgets_the_old_name() {
        let mut ix = NameIndex::default();
        ix.insert("old", 0);
        ix.insert("other", 1);
        ix.insert("new", 0);
        assert_eq!(ix.get("old"), None);
        assert_eq!(ix.get("new"), Some(&0));
        assert_eq!(ix.get("other"), Some(&1));
        // Compaction keeps every slot pointing at its own name.
        for k in 0..3000 {
            ix.insert(&format!("tmp-{k}"), 2);
        }
        ix.remove("tmp-2999");
        ix.compact();
        assert_eq!(ix.get("new"), Some(&0));
        assert_eq!(ix.get("other"), Some(&1));
        assert_eq!(ix.get("tmp-5"), None);
    }

    #[test]
    fn guesses_from_the_last_order_are_checked_never_trusted() {
        let mut ix = NameIndex::default();
        let names: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            ix.insert(n, i);
        }
        let walk = |ix: &NameIndex, order: &[&str]| {
            let mut prev = None;
            order
                .iter()
                .map(|n| {
                    let p = ix.get_after(prev, n);
                    prev = p;
                    p
                })
                .collect::<Vec<_>>()
        };
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        let want: Vec<Option<usize>> = (0..100).map(Some).collect();
        assert_eq!(walk(&ix, &all), want);
        assert_eq!(walk(&ix, &all), want, "second pass follows the guesses");
        // A different order, a subsequence, unknown names: still exact.
        let odd: Vec<&str> = all.iter().rev().step_by(3).copied().chain(["ghost", "n5"]).collect();
        let got = walk(&ix, &odd);
        let expect: Vec<Option<usize>> = odd.iter().map(|n| ix.get(n).copied()).collect();
        assert_eq!(got, expect);
        // Removals move positions under remembered guesses.
        for k in (0..100).step_by(7) {
            ix.remove(&format!("n{k}"));
        }
        let left: Vec<&str> = all.iter().copied().filter(|n| ix.get(n).is_some()).collect();
        let expect: Vec<Option<usize>> = left.iter().map(|n| ix.get(n).copied()).collect();
        assert_eq!(walk(&ix, &left), expect);
        assert_eq!(walk(&ix, &all).iter().filter(|p| p.is_none()).count(), 15);
    }

    #[test]
    fn long_and_unicode_names() {
        let mut ix = NameIndex::default();
        let names = [
            "ip-10-0-12-34.us-west-2.compute.internal",
            "gke-prod-a100-pool-3f2b9c1d-x7k2",
            "nœud-ü",
            "",
        ];
        for (i, n) in names.iter().enumerate() {
            ix.insert(n, i);
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(ix.get(n), Some(&i));
        }
    }
}

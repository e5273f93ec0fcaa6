//! [`OrderedList`]: a sorted set with positions, the order-statistics structure behind live views.
//! A list of sorted blocks (at most [`MAX_BLOCK`] values each) plus a Fenwick tree of the block
//! lengths, so that inserting, removing, finding a value's position (`rank`) and the value at a
//! position (`get`) cost O(log n) comparisons (plus a memmove within one block), and reading `k`
//! values from a position costs O(log n + k). Splitting or dropping a block rebuilds the Fenwick
//! tree: O(n / block) once per ~block inserts.
//!
//! Pure data structure: no locks, no I/O, knows nothing of users.

/// A block is split in two when it grows past this.
const MAX_BLOCK: usize = 1024;

/// A set of `T` in ascending order, addressable by position.
#[derive(Clone, Debug)]
pub(super) struct OrderedList<T> {
    /// Sorted, non-empty blocks; every value of a block is below every value of the next.
    blocks: Vec<Vec<T>>,
    /// Fenwick tree (1-based) over `blocks[i].len()`.
    tree: Vec<usize>,
    len: usize,
}

impl<T: Ord> Default for OrderedList<T> {
    fn default() -> Self {
        OrderedList { blocks: Vec::new(), tree: vec![0], len: 0 }
    }
}

impl<T: Ord> OrderedList<T> {
    /// Builds the list from values already sorted ascending and distinct (checked in debug builds).
    pub(super) fn from_sorted(values: Vec<T>) -> Self {
        debug_assert!(values.windows(2).all(|w| w[0] < w[1]), "from_sorted needs sorted, distinct values");
        let len = values.len();
        let mut blocks = Vec::with_capacity(len.div_ceil(MAX_BLOCK / 2));
        let mut values = values.into_iter().peekable();
        while values.peek().is_some() {
            blocks.push(values.by_ref().take(MAX_BLOCK / 2).collect());
        }
        let mut list = OrderedList { blocks, tree: Vec::new(), len };
        list.rebuild();
        list
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The block a value belongs in: the first whose last value is >= it (or the last block).
    fn block_of(&self, value: &T) -> usize {
        let b = self.blocks.partition_point(|block| block.last().is_some_and(|last| last < value));
        b.min(self.blocks.len().saturating_sub(1))
    }

    /// Inserts `value`; false (and nothing changes) if it is already there.
    pub(super) fn insert(&mut self, value: T) -> bool {
        if self.blocks.is_empty() {
            self.blocks.push(vec![value]);
            self.len = 1;
            self.rebuild();
            return true;
        }
        let b = self.block_of(&value);
        let block = &mut self.blocks[b];
        let Err(i) = block.binary_search(&value) else { return false };
        block.insert(i, value);
        self.len += 1;
        if block.len() > MAX_BLOCK {
            let tail = block.split_off(block.len() / 2);
            self.blocks.insert(b + 1, tail);
            self.rebuild();
        } else {
            self.add(b, 1);
        }
        true
    }

    /// Removes `value`; false if it was not there.
    pub(super) fn remove(&mut self, value: &T) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        let b = self.block_of(value);
        let block = &mut self.blocks[b];
        let Ok(i) = block.binary_search(value) else { return false };
        block.remove(i);
        self.len -= 1;
        if block.is_empty() {
            self.blocks.remove(b);
            self.rebuild();
        } else {
            self.sub(b);
        }
        true
    }

    /// How many values are below `value` (its position if present, else where it would go).
    pub(super) fn rank(&self, value: &T) -> usize {
        if self.blocks.is_empty() {
            return 0;
        }
        let b = self.block_of(value);
        self.prefix(b) + self.blocks[b].partition_point(|v| v < value)
    }

    /// The value at position `k` (from 0).
    #[cfg(test)]
    pub(super) fn get(&self, k: usize) -> Option<&T> {
        let (b, i) = self.locate(k)?;
        self.blocks[b].get(i)
    }

    /// The values from position `start` on, in order.
    pub(super) fn iter_from(&self, start: usize) -> impl Iterator<Item = &T> + '_ {
        let (b, i) = self.locate(start).unwrap_or((self.blocks.len(), 0));
        self.blocks.iter().skip(b).enumerate().flat_map(move |(n, block)| block[if n == 0 { i } else { 0 }..].iter())
    }

    /// (block, index in block) of position `k`.
    fn locate(&self, k: usize) -> Option<(usize, usize)> {
        if k >= self.len {
            return None;
        }
        // Binary lifting on the Fenwick tree: the last block whose prefix sum is <= k.
        let n = self.blocks.len();
        let mut pos = 0;
        let mut rest = k;
        let mut step = n.next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] <= rest {
                pos = next;
                rest -= self.tree[next];
            }
            step /= 2;
        }
        Some((pos, rest))
    }

    /// Sum of the lengths of the first `b` blocks.
    fn prefix(&self, b: usize) -> usize {
        let mut i = b;
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i];
            i &= i - 1;
        }
        sum
    }

    fn add(&mut self, b: usize, n: usize) {
        let mut i = b + 1;
        while i < self.tree.len() {
            self.tree[i] += n;
            i += i & i.wrapping_neg();
        }
    }

    fn sub(&mut self, b: usize) {
        let mut i = b + 1;
        while i < self.tree.len() {
            self.tree[i] -= 1;
            i += i & i.wrapping_neg();
        }
    }

    fn rebuild(&mut self) {
        let n = self.blocks.len();
        self.tree.clear();
        self.tree.resize(n + 1, 0);
        for b in 0..n {
            let i = b + 1;
            self.tree[i] += self.blocks[b].len();
            let parent = i + (i & i.wrapping_neg());
            if parent <= n {
                self.tree[parent] += self.tree[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16),
        Remove(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![3 => any::<u16>().prop_map(Op::Insert), 1 => any::<u16>().prop_map(Op::Remove)]
    }

    fn check(list: &OrderedList<u16>, model: &BTreeSet<u16>) {
        let all: Vec<u16> = model.iter().copied().collect();
        assert_eq!(list.len(), all.len());
        assert_eq!(list.iter_from(0).copied().collect::<Vec<_>>(), all);
        for (k, v) in all.iter().enumerate().step_by(97) {
            assert_eq!(list.get(k), Some(v));
            assert_eq!(list.rank(v), k);
            assert_eq!(list.iter_from(k).next(), Some(v));
        }
        assert_eq!(list.get(all.len()), None);
        assert_eq!(list.iter_from(all.len()).count(), 0);
    }

    proptest! {
        // Each case is thousands of operations (blocks must split and vanish): few cases suffice.
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn behaves_like_a_sorted_set(start in proptest::collection::btree_set(any::<u16>(), 0..3000),
                                     ops in proptest::collection::vec(op(), 0..4000)) {
            let mut model = start.clone();
            let mut list = OrderedList::from_sorted(start.into_iter().collect());
            check(&list, &model);
            for op in ops {
                match op {
                    Op::Insert(v) => prop_assert_eq!(list.insert(v), model.insert(v)),
                    Op::Remove(v) => prop_assert_eq!(list.remove(&v), model.remove(&v)),
                }
                // Ranks of absent values too.
                let probe = 40_000u16;
                prop_assert_eq!(list.rank(&probe), model.range(..probe).count());
            }
            check(&list, &model);
        }
    }

    #[test]
    fn blocks_split_and_vanish() {
        let mut list = OrderedList::default();
        for v in (0..10_000u32).rev() {
            assert!(list.insert(v));
        }
        assert!(list.blocks.len() > 10, "inserting split blocks");
        assert_eq!(list.get(5_000), Some(&5_000));
        assert_eq!(list.rank(&7_777), 7_777);
        for v in 0..10_000u32 {
            assert!(list.remove(&v));
        }
        assert_eq!((list.len(), list.blocks.len()), (0, 0));
        assert_eq!(list.get(0), None);
        assert_eq!(list.rank(&3), 0);
        assert!(!list.remove(&3));
    }
}

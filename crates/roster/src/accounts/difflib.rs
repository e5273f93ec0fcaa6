//! A port of the parts of CPython's `difflib.SequenceMatcher` that Django's
//! `UserAttributeSimilarityValidator` relies on: `quick_ratio` (what Django 5.2 actually
//! compares) and `ratio` (Ratcliff/Obershelp "gestalt pattern matching", ported line by line
//! from CPython 3.11's `find_longest_match`/`get_matching_blocks`, with `isjunk=None` and
//! `autojunk=True`). Works on Unicode code points, as Python's `str` does. Pure; no I/O.
//! (A translation of CPython's `Lib/difflib.py`, Python Software Foundation License.)

use std::collections::HashMap;

/// `difflib.SequenceMatcher(isjunk=None, a=a, b=b, autojunk=True)` over code points.
#[derive(Debug)]
pub(super) struct SequenceMatcher {
    a: Vec<char>,
    b: Vec<char>,
    #[cfg_attr(not(test), allow(dead_code, reason = "only ratio() reads it; see ratio()"))]
    /// `b2j`: for each element of `b`, the ascending indices where it occurs, minus "popular"
    /// elements when `b` has 200 or more elements (CPython's autojunk heuristic).
    b2j: HashMap<char, Vec<usize>>,
}

impl SequenceMatcher {
    pub(super) fn new(a: &str, b: &str) -> Self {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        let mut b2j: HashMap<char, Vec<usize>> = HashMap::new();
        for (i, &elt) in b.iter().enumerate() {
            b2j.entry(elt).or_default().push(i);
        }
        let n = b.len();
        if n >= 200 {
            let ntest = n / 100 + 1;
            b2j.retain(|_, idxs| idxs.len() <= ntest);
        }
        Self { a, b, b2j }
    }

    /// CPython's `_calculate_ratio`.
    fn calculate_ratio(matches: usize, length: usize) -> f64 {
        if length == 0 {
            1.0
        } else {
            // Exact in f64 for any realistic length, and the same operations as Python.
            2.0 * matches as f64 / length as f64
        }
    }

    /// `SequenceMatcher.quick_ratio()`: an upper bound on `ratio()` from multiset intersection.
    pub(super) fn quick_ratio(&self) -> f64 {
        let mut fullbcount: HashMap<char, isize> = HashMap::new();
        for &elt in &self.b {
            *fullbcount.entry(elt).or_insert(0) += 1;
        }
        let mut avail: HashMap<char, isize> = HashMap::new();
        let mut matches = 0usize;
        for &elt in &self.a {
            let numb = match avail.get(&elt) {
                Some(&n) => n,
                None => fullbcount.get(&elt).copied().unwrap_or(0),
            };
            avail.insert(elt, numb - 1);
            if numb > 0 {
                matches += 1;
            }
        }
        Self::calculate_ratio(matches, self.a.len() + self.b.len())
    }

    /// `SequenceMatcher.ratio()`: 2·M/T where M is the number of matched elements. Django 5.2's
    /// validator stops at `quick_ratio`, so only tests call this today; it is kept, tested
    /// against CPython, for callers that want the exact figure.
    #[cfg_attr(not(test), allow(dead_code, reason = "Django 5.2 uses quick_ratio only"))]
    pub(super) fn ratio(&self) -> f64 {
        let matches: usize = self.matching_blocks().iter().map(|&(_, _, k)| k).sum();
        Self::calculate_ratio(matches, self.a.len() + self.b.len())
    }

    #[cfg_attr(not(test), allow(dead_code, reason = "used by ratio()"))]
    /// `find_longest_match(alo, ahi, blo, bhi)` with no junk (so only the first pair of
    /// extension loops can do anything; they still extend across "popular" elements, exactly
    /// as CPython does).
    fn find_longest_match(&self, alo: usize, ahi: usize, blo: usize, bhi: usize) -> (usize, usize, usize) {
        let (a, b) = (&self.a, &self.b);
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0usize);
        let mut j2len: HashMap<usize, usize> = HashMap::new();
        for (i, elt) in a.iter().enumerate().take(ahi).skip(alo) {
            let mut newj2len: HashMap<usize, usize> = HashMap::new();
            if let Some(js) = self.b2j.get(elt) {
                for &j in js {
                    if j < blo {
                        continue;
                    }
                    if j >= bhi {
                        break;
                    }
                    let prev = j.checked_sub(1).and_then(|p| j2len.get(&p)).copied().unwrap_or(0);
                    let k = prev + 1;
                    newj2len.insert(j, k);
                    if k > bestsize {
                        besti = i + 1 - k;
                        bestj = j + 1 - k;
                        bestsize = k;
                    }
                }
            }
            j2len = newj2len;
        }
        while besti > alo && bestj > blo && a[besti - 1] == b[bestj - 1] {
            besti -= 1;
            bestj -= 1;
            bestsize += 1;
        }
        while besti + bestsize < ahi && bestj + bestsize < bhi && a[besti + bestsize] == b[bestj + bestsize] {
            bestsize += 1;
        }
        (besti, bestj, bestsize)
    }

    #[cfg_attr(not(test), allow(dead_code, reason = "used by ratio()"))]
    /// `get_matching_blocks()` without the trailing sentinel and without merging adjacent
    /// blocks (neither changes the total matched, which is all `ratio` needs).
    fn matching_blocks(&self) -> Vec<(usize, usize, usize)> {
        let mut queue = vec![(0, self.a.len(), 0, self.b.len())];
        let mut blocks = Vec::new();
        while let Some((alo, ahi, blo, bhi)) = queue.pop() {
            let (i, j, k) = self.find_longest_match(alo, ahi, blo, bhi);
            if k > 0 {
                blocks.push((i, j, k));
                if alo < i && blo < j {
                    queue.push((alo, i, blo, j));
                }
                if i + k < ahi && j + k < bhi {
                    queue.push((i + k, ahi, j + k, bhi));
                }
            }
        }
        blocks.sort_unstable();
        blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (a, b, ratio, quick_ratio), the ratios printed by CPython 3.11.7:
    /// `s = difflib.SequenceMatcher(a=a, b=b); print(repr(s.ratio()), repr(s.quick_ratio()))`.
    fn cases() -> Vec<(String, String, f64, f64)> {
        let v = |a: &str, b: &str, r: f64, q: f64| (a.to_owned(), b.to_owned(), r, q);
        vec![
            v("", "", 1.0, 1.0),
            v("abc", "", 0.0, 0.0),
            v("", "abc", 0.0, 0.0),
            v("abcd", "bcde", 0.75, 0.75),
            v("password", "username", 0.125, 0.375),
            v("alice2024", "alice", 0.7142857142857143, 0.7142857142857143),
            v("qwerty", "ytrewq", 0.16666666666666666, 1.0),
            v("private volume", "volume private", 0.5, 1.0),
            v("abxcd", "abcd", 0.8888888888888888, 0.8888888888888888),
            v("aaaa", "aa", 0.6666666666666666, 0.6666666666666666),
            v("tide", "diet", 0.25, 1.0),
            v("johnsmith", "smithjohn", 0.5555555555555556, 1.0),
            v("Zoë Ünïcödé", "zoe unicode", 0.45454545454545453, 0.45454545454545453),
            // b of 200+ elements: autojunk drops popular elements from b2j.
            v(&"a".repeat(10), &"a".repeat(250), 0.07692307692307693, 0.07692307692307693),
            ("ab".repeat(150), format!("{}{}", "ba".repeat(120), "x".repeat(10)), 0.0, 0.8727272727272727),
            (format!("{}q", "xyz".repeat(70)), format!("q{}", "xyz".repeat(70)), 0.004739336492890996, 1.0),
        ]
    }

    #[test]
    fn ratios_match_cpython_bit_for_bit() {
        for (a, b, ratio, quick) in cases() {
            let m = SequenceMatcher::new(&a, &b);
            assert_eq!(m.ratio().to_bits(), ratio.to_bits(), "ratio({a:?}, {b:?})");
            assert_eq!(m.quick_ratio().to_bits(), quick.to_bits(), "quick_ratio({a:?}, {b:?})");
        }
    }

    proptest::proptest! {
        #[test]
        fn quick_ratio_bounds_ratio(a in "[abc]{0,30}", b in "[abc ]{0,30}") {
            let m = SequenceMatcher::new(&a, &b);
            let (r, q) = (m.ratio(), m.quick_ratio());
            proptest::prop_assert!((0.0..=1.0).contains(&r));
            proptest::prop_assert!(r <= q);
        }
    }
}

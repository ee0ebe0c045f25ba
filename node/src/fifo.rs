//! A map of at most a fixed number of entries that forgets the oldest first: what a node
//! remembers because of requests it does not control (files removed lately, data keys
//! opened), bounded so that no sequence of requests can grow it.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// At most `most` entries; adding to a full map forgets the oldest.
#[derive(Debug)]
pub(crate) struct FifoMap<K, V> {
    entries: HashMap<K, V>,
    /// The same keys, oldest first.
    order: VecDeque<K>,
    most: usize,
}

impl<K: Eq + Hash + Clone, V> FifoMap<K, V> {
    /// An empty map of at most `most` entries.
    pub(crate) fn new(most: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            most,
        }
    }

    /// Adds `key` unless it is there already (then nothing changes: repeats neither grow
    /// the map nor make an entry younger), forgetting the oldest past the bound. Whether
    /// it was added.
    pub(crate) fn insert(&mut self, key: K, value: V) -> bool {
        if self.entries.contains_key(&key) {
            return false;
        }
        self.entries.insert(key.clone(), value);
        self.order.push_back(key);
        while self.order.len() > self.most {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
        true
    }

    /// The value of `key`, if remembered.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key)
    }

    /// Forgets the oldest entries as long as `done` says so of their values.
    pub(crate) fn forget_oldest_while(&mut self, done: impl Fn(&V) -> bool) {
        while let Some(oldest) = self.order.front() {
            if self.entries.get(oldest).is_some_and(|v| !done(v)) {
                break;
            }
            self.entries.remove(oldest);
            self.order.pop_front();
        }
    }

    /// Forgets the oldest entry, and hands it back.
    pub(crate) fn pop_oldest(&mut self) -> Option<(K, V)> {
        let oldest = self.order.pop_front()?;
        let value = self.entries.remove(&oldest)?;
        Some((oldest, value))
    }

    /// Forgets `key`'s entry, if there is one, and hands its value back.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let value = self.entries.remove(key)?;
        self.order.retain(|k| k != key);
        Some(value)
    }

    /// Whether the map holds as many entries as it may.
    pub(crate) fn is_full(&self) -> bool {
        self.order.len() >= self.most
    }

    /// How many entries are remembered.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_goes_first_and_repeats_change_nothing() {
        let mut map = FifoMap::new(3);
        for n in 0..3 {
            assert!(map.insert(n, n * 10));
        }
        assert!(!map.insert(0, 99), "a repeat is not added");
        assert_eq!(map.get(&0), Some(&0));
        assert!(map.insert(3, 30));
        assert_eq!((map.len(), map.get(&0), map.get(&3)), (3, None, Some(&30)));
        map.forget_oldest_while(|v| *v < 25);
        assert_eq!((map.len(), map.get(&2), map.get(&3)), (1, None, Some(&30)));
    }

    #[test]
    fn entries_leave_oldest_first_or_by_key() {
        let mut map = FifoMap::new(5);
        for n in 0..4 {
            map.insert(n, n * 10);
        }
        assert_eq!(map.remove(&1), Some(10));
        assert_eq!(map.remove(&1), None);
        assert_eq!(map.pop_oldest(), Some((0, 0)));
        assert_eq!(map.pop_oldest(), Some((2, 20)));
        assert!(map.insert(1, 11), "a removed key can come back");
        assert_eq!(map.pop_oldest(), Some((3, 30)));
        assert_eq!(map.pop_oldest(), Some((1, 11)));
        assert_eq!((map.pop_oldest(), map.len()), (None, 0));
        for n in 0..5 {
            assert!(!map.is_full());
            map.insert(n, n);
        }
        assert!(map.is_full());
    }
}

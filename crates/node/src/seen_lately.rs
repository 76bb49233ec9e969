//! A bounded memory of things seen lately (asks served on a link, fork proofs checked): the
//! last [`SeenLately::MAX`] of them, as hashes under a key of the set's own, so a peer cannot
//! choose values that collide and each costs a few bytes whatever it is.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, RandomState};
use std::marker::PhantomData;

pub struct SeenLately<T> {
    hasher: RandomState,
    set: HashSet<u64>,
    order: VecDeque<u64>,
    kind: PhantomData<fn(&T)>,
}

impl<T> Default for SeenLately<T> {
    fn default() -> SeenLately<T> {
        SeenLately {
            hasher: RandomState::new(),
            set: HashSet::new(),
            order: VecDeque::new(),
            kind: PhantomData,
        }
    }
}

impl<T: Hash> SeenLately<T> {
    /// How many are kept; the oldest go first.
    pub const MAX: usize = 65_536;

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub fn contains(&self, item: &T) -> bool {
        self.set.contains(&self.hasher.hash_one(item))
    }

    pub fn insert(&mut self, item: &T) {
        let h = self.hasher.hash_one(item);
        if self.set.insert(h) {
            self.order.push_back(h);
        }
        while self.order.len() > Self::MAX {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

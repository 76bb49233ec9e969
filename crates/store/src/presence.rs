//! `Presence`: which indicators the index may hold, kept in memory, so that reading one it
//! does not hold touches no disk.
//!
//! Most reads of the index are for indicators it does not hold: a lookup probes the value, the
//! block at every prefix length the store holds and every parent domain, and usually one of
//! them is listed; an ingest reads the state of every new indicator before folding it. Each
//! such miss went through the memtable and the Bloom filter of every table of the LSM tree.
//! Here a miss is one or a few cache lines.
//!
//! A chain of blocked Bloom filters (one cache line per key), each twice the capacity of the
//! one before, so the index can grow without a rebuild; about 1.5 bytes per indicator (22 MiB
//! at 10M). A store opened with an index on disk starts with one filter of twice its size (3
//! bytes per indicator, 29 MiB at 10M): a miss then asks one filter, not the four a chain
//! grows to by 10M. A second chain holds the CIDR blocks by their bits, which a lookup of an
//! address asks about at every prefix length the store holds: nearly always absent, and so told
//! without building the block's text, key and state-table probe. Keys are never removed: an
//! indicator gone from the index (a truncation) costs a disk read that finds nothing, never a
//! wrong answer.
//!
//! The invariant, on which every "not held" answer rests: once [`Presence::filled`] is set,
//! every key of the index has been added. Writers add the keys they create *before* their
//! batch is applied (`index_write`), and at open a background pass adds every key already on
//! disk (`fill_in_background`); until that pass ends, every key may be held.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use intelmesh_core::containment::BlockBits;
use intelmesh_core::IndicatorType;

use crate::background::Background;
use crate::kv::Kv;
use crate::{keys, StoreError};

/// Capacity of the first filter of the chain, in keys.
const FIRST_CAPACITY: u64 = 1 << 20;
/// Bits per key at capacity: about 1% false positives per filter with [`BITS_SET`] bits.
const BITS_PER_KEY: u64 = 12;
/// Bits set per key, within its block; each picked by 9 bits of the hash (63 of 64).
const BITS_SET: u32 = 7;
/// Filters a chain may grow to: 2^20 keys in the first, 2^43 in the last.
const MAX_FILTERS: usize = 24;
/// The fill pass checks whether the store is closing this often (keys).
const STOP_CHECK_EVERY: u64 = 4096;

/// One cache line of a filter: a key's bits all fall in one block.
#[repr(align(64))]
struct Block([AtomicU64; 8]);

/// One blocked Bloom filter of the chain.
struct Filter {
    blocks: Box<[Block]>,
    capacity: u64,
    added: AtomicU64,
}

/// A key's hash: the low half picks the block, the high half the bits in it.
#[derive(Clone, Copy)]
struct Hash {
    block: u64,
    bits: u64,
}

fn hash(key: &[u8]) -> Hash {
    let h = xxhash_rust::xxh3::xxh3_128(key);
    Hash {
        block: h as u64,
        bits: (h >> 64) as u64,
    }
}

impl Filter {
    fn new(capacity: u64) -> Filter {
        let blocks = (capacity * BITS_PER_KEY).div_ceil(512).max(1);
        Filter {
            blocks: (0..blocks)
                .map(|_| Block(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
            capacity,
            added: AtomicU64::new(0),
        }
    }

    /// The block of `h` and, per word of it, the bits `h` sets there.
    fn mask(&self, h: Hash) -> (&Block, [u64; 8]) {
        let n = self.blocks.len() as u128;
        let block = &self.blocks[((u128::from(h.block) * n) >> 64) as usize];
        let mut words = [0u64; 8];
        for i in 0..BITS_SET {
            let bit = (h.bits >> (9 * i)) & 511;
            words[(bit >> 6) as usize] |= 1 << (bit & 63);
        }
        (block, words)
    }

    fn may_hold(&self, h: Hash) -> bool {
        let (block, words) = self.mask(h);
        block
            .0
            .iter()
            .zip(words)
            .all(|(w, m)| w.load(Ordering::Acquire) & m == m)
    }

    fn add(&self, h: Hash) {
        let (block, words) = self.mask(h);
        for (w, m) in block.0.iter().zip(words) {
            if m != 0 {
                w.fetch_or(m, Ordering::AcqRel);
            }
        }
        self.added.fetch_add(1, Ordering::Relaxed);
    }

    fn full(&self) -> bool {
        self.added.load(Ordering::Relaxed) >= self.capacity
    }
}

/// The index keys a store may hold, and the CIDR blocks among them (see the module
/// documentation).
#[derive(Default)]
pub(crate) struct Presence {
    filled: AtomicBool,
    keys: Chain,
    /// The blocks of the CIDR keys by their bits ([`BlockBits`]), so a containment lookup
    /// passes over a block nobody listed without formatting its key.
    blocks: Chain,
}

impl Presence {
    /// An empty presence whose filter of keys has room for twice `keys`: an index opened with
    /// `keys` already on disk is then held in one filter, where a chain grown from the first
    /// size would take several (four at 10M), each asked on every miss.
    pub(crate) fn sized_for(keys: u64) -> Presence {
        Presence {
            filled: AtomicBool::new(false),
            keys: Chain::with_first(keys.saturating_mul(2).max(FIRST_CAPACITY)),
            blocks: Chain::default(),
        }
    }

    /// False only if the index certainly does not hold `key`.
    pub(crate) fn may_hold(&self, key: &[u8]) -> bool {
        !self.filled() || self.keys.may_hold(hash(key))
    }

    /// False only if the index certainly holds no CIDR block `block`.
    pub(crate) fn may_hold_block(&self, block: &BlockBits) -> bool {
        !self.filled() || self.blocks.may_hold(hash(block.as_bytes()))
    }

    /// Records that the index holds `key` (from before the write that creates it is applied),
    /// and its block if it is a CIDR block's key.
    pub(crate) fn add(&self, key: &[u8]) {
        self.keys.add(hash(key));
        // The type byte first: every key of an ingest and of the open's pass comes here, and
        // only a CIDR key's value is worth reading.
        if keys::type_of_index(key) != Some(IndicatorType::Cidr) {
            return;
        }
        let block = keys::indicator_of_index(key).and_then(|(_, value)| BlockBits::of_cidr(value));
        if let Some(block) = block {
            self.blocks.add(hash(block.as_bytes()));
        }
    }

    /// Whether every key of the index has been added (before this, every key may be held).
    pub(crate) fn filled(&self) -> bool {
        self.filled.load(Ordering::Acquire)
    }

    /// Memory held by the filters, in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.keys.bytes() + self.blocks.bytes()
    }
}

/// A growing chain of filters.
///
/// Reads take no lock: filters are only ever appended, each in the next slot and set once, so
/// the filters are the slots up to the first unset one (a lock word written by every read
/// bounced between the cores and cost more than the filter itself).
struct Chain {
    slots: [OnceLock<Filter>; MAX_FILTERS],
    /// Held while a filter is appended.
    growing: Mutex<()>,
}

impl Default for Chain {
    fn default() -> Chain {
        Chain::with_first(FIRST_CAPACITY)
    }
}

impl Chain {
    /// A chain whose first filter holds `capacity` keys.
    fn with_first(capacity: u64) -> Chain {
        let c = Chain {
            slots: std::array::from_fn(|_| OnceLock::new()),
            growing: Mutex::new(()),
        };
        let _ = c.slots[0].set(Filter::new(capacity));
        c
    }

    fn may_hold(&self, h: Hash) -> bool {
        self.filters().any(|f| f.may_hold(h))
    }

    fn add(&self, h: Hash) {
        if self.may_hold(h) {
            return;
        }
        if let Some(last) = self.filters().last().filter(|f| !f.full()) {
            last.add(h);
            return;
        }
        let _growing = self.growing.lock().unwrap_or_else(|p| p.into_inner());
        let len = self.filters().count();
        match self.filters().last() {
            Some(last) if !last.full() => last.add(h),
            // Past the last slot (2^44 keys) the last filter takes more than its capacity.
            Some(last) if len == MAX_FILTERS => last.add(h),
            last => {
                let capacity = last.map_or(FIRST_CAPACITY, |f| f.capacity * 2);
                let next = Filter::new(capacity);
                next.add(h);
                let _ = self.slots[len].set(next);
            }
        }
    }

    fn bytes(&self) -> usize {
        self.filters()
            .map(|f| std::mem::size_of_val(&*f.blocks))
            .sum()
    }

    fn filters(&self) -> impl Iterator<Item = &Filter> {
        self.slots.iter().map_while(OnceLock::get)
    }
}

/// Starts the pass adding every index key in `db` to `presence`, which is marked filled when
/// the pass ends. Writes made meanwhile add their own keys.
pub(crate) fn fill_in_background(db: Kv, presence: Arc<Presence>) -> Background {
    Background::spawn(
        "index-presence",
        "index presence filter not started; every read goes to disk",
        move |stopping| {
            let t = std::time::Instant::now();
            match fill(&db, &presence, stopping) {
                Ok(Some(keys)) => {
                    presence.filled.store(true, Ordering::Release);
                    tracing::info!(
                        keys,
                        ms = t.elapsed().as_millis() as u64,
                        bytes = presence.bytes(),
                        "index presence filter filled"
                    );
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    error = %e,
                    "index presence filter not filled; every read goes to disk"
                ),
            }
        },
    )
}

/// Adds every index key; `None` if told to stop first.
fn fill(db: &Kv, presence: &Presence, stop: &AtomicBool) -> Result<Option<u64>, StoreError> {
    let mut n = 0u64;
    for key in db.scan_prefix([keys::INDEX]).keys() {
        presence.add(&key?);
        n += 1;
        if n.is_multiple_of(STOP_CHECK_EVERY) && stop.load(Ordering::Acquire) {
            return Ok(None);
        }
    }
    Ok(Some(n))
}

#[cfg(test)]
impl Presence {
    /// A presence taken as filled from the start (an empty store's).
    pub(crate) fn filled_empty() -> Presence {
        let p = Presence::default();
        p.filled.store(true, Ordering::Release);
        p
    }

    fn filter_count(&self) -> usize {
        self.keys.filters().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Vec<u8> {
        let mut k = vec![keys::INDEX, 3];
        k.extend_from_slice(format!("host{i}.example").as_bytes());
        k
    }

    #[test]
    fn every_added_key_is_held_as_the_chain_grows() {
        let p = Presence::filled_empty();
        let n = FIRST_CAPACITY * 3 / 2;
        for i in 0..n {
            p.add(&key(i));
        }
        assert_eq!(
            p.filter_count(),
            2,
            "a second filter takes what the first cannot"
        );
        let missed: Vec<u64> = (0..n).filter(|&i| !p.may_hold(&key(i))).collect();
        assert!(
            missed.is_empty(),
            "added but not held: {:?}",
            &missed[..missed.len().min(5)]
        );
    }

    #[test]
    fn a_presence_sized_for_an_index_holds_it_in_one_filter() {
        let n = FIRST_CAPACITY * 3 / 2;
        let p = Presence::sized_for(n);
        p.filled.store(true, Ordering::Release);
        for i in 0..n {
            p.add(&key(i));
        }
        assert_eq!(
            p.filter_count(),
            1,
            "no second filter for the keys it was sized for"
        );
        assert!((0..n).all(|i| p.may_hold(&key(i))));
        // Half full, it answers absent keys better than a full filter's 1%.
        let absent = 100_000;
        let false_positives = (n..n + absent).filter(|&i| p.may_hold(&key(i))).count();
        assert!(
            false_positives < absent as usize / 100,
            "{false_positives} of {absent} absent keys said to be held"
        );
        // An empty or small index starts from the first size, as a new store does.
        let small = Presence::sized_for(10);
        assert_eq!(
            small.keys.filters().map(|f| f.capacity).collect::<Vec<_>>(),
            vec![FIRST_CAPACITY]
        );
    }

    #[test]
    fn readers_never_miss_a_key_added_before_while_the_chain_grows() {
        let p = Arc::new(Presence::filled_empty());
        let added = Arc::new(AtomicU64::new(0));
        let n = FIRST_CAPACITY * 3 / 2;
        let writer = {
            let (p, added) = (Arc::clone(&p), Arc::clone(&added));
            std::thread::spawn(move || {
                for i in 0..n {
                    p.add(&key(i));
                    added.store(i + 1, Ordering::Release);
                }
            })
        };
        let mut checked = 0u64;
        while added.load(Ordering::Acquire) < n {
            let upto = added.load(Ordering::Acquire);
            for i in upto.saturating_sub(64)..upto {
                assert!(p.may_hold(&key(i)), "key {i} added, then not held");
                checked += 1;
            }
        }
        writer.join().expect("writer");
        assert_eq!(p.filter_count(), 2, "the chain grew while being read");
        assert!(checked > 0);
    }

    #[test]
    fn absent_keys_are_mostly_answered_not_held() {
        let p = Presence::filled_empty();
        for i in 0..FIRST_CAPACITY {
            p.add(&key(i));
        }
        let probes = 200_000;
        let false_positives = (0..probes)
            .filter(|i| p.may_hold(&key(FIRST_CAPACITY + i)))
            .count();
        let rate = false_positives as f64 / probes as f64;
        assert!(rate < 0.02, "false positive rate {rate} at capacity");
    }

    #[test]
    fn a_cidr_key_adds_its_block_and_other_keys_add_none() {
        let p = Presence::filled_empty();
        let cidr = |v: &str| {
            let mut k = vec![keys::INDEX, IndicatorType::Cidr.code()];
            k.extend_from_slice(v.as_bytes());
            k
        };
        p.add(&cidr("10.1.0.0/16"));
        p.add(&cidr("2001:db8::/32"));
        p.add(&key(7));
        let bits = |v: &str| BlockBits::of_cidr(v).expect("a block");
        assert!(p.may_hold_block(&bits("10.1.0.0/16")));
        assert!(p.may_hold_block(&bits("2001:db8::/32")));
        let absent = (0..=255u8)
            .filter(|i| p.may_hold_block(&bits(&format!("10.{i}.0.0/24"))))
            .count();
        assert!(absent < 10, "{absent} of 256 absent blocks said held");
        assert!(
            p.may_hold(&cidr("10.1.0.0/16")),
            "the key itself is held too"
        );
        let unfilled = Presence::default();
        assert!(unfilled.may_hold_block(&bits("10.9.0.0/16")));
    }

    #[test]
    fn before_it_is_filled_everything_may_be_held() {
        let p = Presence::default();
        assert!(p.may_hold(&key(1)));
        p.add(&key(2));
        assert!(
            p.may_hold(&key(3)),
            "unfilled: a key on disk may not be added yet"
        );
        p.filled.store(true, Ordering::Release);
        assert!(p.may_hold(&key(2)));
    }
}

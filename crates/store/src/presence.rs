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
//! without building the block's text, key and state-table probe. Before it, an exact set of the
//! /16s that hold a block of length 16 or more (16 KiB) tells most of them without a hash or a
//! cache miss: real lists' blocks cluster in few /16s. Keys are never removed: an
//! indicator gone from the index (a truncation) costs a disk read that finds nothing, never a
//! wrong answer.
//!
//! A chain grown from empty past three filters (three cache lines a miss, four at 10M) is
//! regrown: the state table's builder, which scans the index anyway, fills one filter with
//! room for four times the index ([`Presence::start_regrowth`]) and puts it in place of the
//! chain ([`Presence::finish_regrowth`]); readers then ask it and what the chain gains after it.
//! The old filters stay allocated (a reader may be in one; about 1.5 bytes per key they held).
//!
//! The invariant, on which every "not held" answer rests: once [`Presence::filled`] is set,
//! every key of the index has been added. Every batch adds the index keys it writes *before*
//! it is committed, under the state table's gate (`Kv::apply_batch`), and at open a background
//! pass adds every key already on disk (`fill_in_background`); until that pass ends, every key
//! may be held. A regrowth starts under that gate held exclusively, so each batch's keys are
//! either on disk before its scan begins or added to it (see [`Presence::add`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use intelmesh_core::containment::{BlockBits, INLINE_BLOCKS, REGIONS};
use intelmesh_core::IndicatorType;
use smallvec::{smallvec, SmallVec};

use crate::background::Background;
use crate::kv::Kv;
use crate::{keys, StoreError};

/// Capacity of the first filter of the chain, in keys (smaller in unit tests, so that their
/// chains grow and are regrown).
const FIRST_CAPACITY: u64 = if cfg!(test) { 1 << 12 } else { 1 << 20 };
/// Filters asked per miss from which a chain is regrown.
const REGROW_AT: usize = 3;
/// A regrown filter has room for this many times the keys of the index.
const REGROWN_ROOM: u64 = 4;
/// Bits per key at capacity: about 1% false positives per filter with [`BITS_SET`] bits.
const BITS_PER_KEY: u64 = 12;
/// Most keys one filter is sized for (384 MiB of bits): a count read from a damaged store must
/// not ask for more memory than a machine has; a larger index takes a chain of filters.
const MAX_CAPACITY: u64 = 1 << 28;
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
        let capacity = capacity.min(MAX_CAPACITY);
        let blocks = (capacity * BITS_PER_KEY).div_ceil(512).max(1);
        // Every probe is a random line of it: asked for 2 MiB pages before it is written, so
        // they are its first pages, not a copy of 4 KiB ones (a chain grows on a write's path).
        let mut filled = Vec::with_capacity(blocks as usize);
        crate::huge_pages::back_with_huge_pages(filled.spare_capacity_mut());
        filled.extend((0..blocks).map(|_| Block(std::array::from_fn(|_| AtomicU64::new(0)))));
        Filter {
            blocks: filled.into_boxed_slice(),
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

    /// [`Filter::may_hold`] with no branch on what it reads: in a loop over many hashes, the
    /// reads of all of them are then in flight at once.
    fn may_hold_unbranched(&self, h: Hash) -> bool {
        let (block, words) = self.mask(h);
        block.0.iter().zip(words).fold(true, |held, (w, m)| {
            held & (w.load(Ordering::Acquire) & m == m)
        })
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

    /// Adds `h` unless it may be held already (a scan and a writer may both add a key).
    fn add_once(&self, h: Hash) {
        if !self.may_hold(h) {
            self.add(h);
        }
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
    /// The /16s holding a block of length 16 or more, asked before `blocks`.
    regions: Regions,
    /// The filter of keys being regrown, if any: every key added goes to it too.
    regrowth: RwLock<Option<Arc<Filter>>>,
}

/// A filter of keys being filled to take the place of the chain of keys (see
/// [`Presence::start_regrowth`]).
pub(crate) struct Regrowth(Arc<Filter>);

impl Regrowth {
    /// Adds a key of the index, as read by the scan filling it.
    pub(crate) fn add(&self, key: &[u8]) {
        self.0.add_once(hash(key));
    }
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
            regions: Regions::default(),
            regrowth: RwLock::default(),
        }
    }

    /// False only if the index certainly does not hold `key`.
    pub(crate) fn may_hold(&self, key: &[u8]) -> bool {
        !self.filled() || self.keys.may_hold(hash(key))
    }

    /// Clears `held[i]` where the index certainly holds no CIDR block `blocks[i]` (`held` as
    /// long as `blocks`, all true when asked; see `HeldBlocks`).
    pub(crate) fn may_hold_blocks(&self, blocks: &[BlockBits], held: &mut [bool]) {
        if !self.filled() {
            return;
        }
        // On the stack for the blocks around an address (not zeroed first, which cost a
        // memset as large as the rest).
        let mut hashes: SmallVec<[Hash; INLINE_BLOCKS]> = SmallVec::new();
        let mut asked: SmallVec<[usize; INLINE_BLOCKS]> = SmallVec::new();
        for (i, (block, held)) in blocks.iter().zip(held.iter_mut()).enumerate() {
            // A block in a /16 that holds none of its length is told without its hash or a
            // filter's cache line: most addresses looked up lie outside every listed /16.
            if block.region().is_none_or(|r| self.regions.holds(r)) {
                hashes.push(hash(block.as_bytes()));
                asked.push(i);
            } else {
                *held = false;
            }
        }
        let mut in_filter: SmallVec<[bool; INLINE_BLOCKS]> = smallvec![false; hashes.len()];
        self.blocks.may_hold_each(&hashes, &mut in_filter);
        for (&i, &in_filter) in asked.iter().zip(in_filter.iter()) {
            held[i] = in_filter;
        }
    }

    /// Per key of `keys`, false only if the index certainly does not hold it.
    pub(crate) fn may_hold_each<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<bool> {
        if !self.filled() {
            return vec![true; keys.len()];
        }
        let hashes: Vec<Hash> = keys.iter().map(|k| hash(k.as_ref())).collect();
        let mut held = vec![false; hashes.len()];
        self.keys.may_hold_each(&hashes, &mut held);
        held
    }

    /// Records that the index holds `key` (from before the write that creates it is applied),
    /// and its block if it is a CIDR block's key.
    ///
    /// The filter being regrown is told first: [`Presence::finish_regrowth`] puts it in the
    /// chain before it stops taking keys here, so a key either reaches it here or, once it is
    /// no longer here, reaches it (or a filter after it) as the chain's last.
    pub(crate) fn add(&self, key: &[u8]) {
        let h = hash(key);
        if let Some(regrowing) = self.regrowing().as_ref() {
            regrowing.add_once(h);
        }
        self.keys.add(h);
        // The type byte first: every key of an ingest and of the open's pass comes here, and
        // only a CIDR key's value is worth reading.
        if keys::type_of_index(key) != Some(IndicatorType::Cidr) {
            return;
        }
        let block = keys::indicator_of_index(key).and_then(|(_, value)| BlockBits::of_cidr(value));
        if let Some(block) = block {
            if let Some(region) = block.region() {
                self.regions.add(region);
            }
            self.blocks.add(hash(block.as_bytes()));
        }
    }

    /// Whether every key of the index has been added (before this, every key may be held).
    pub(crate) fn filled(&self) -> bool {
        self.filled.load(Ordering::Acquire)
    }

    /// Memory held by the filters, in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.keys.bytes() + self.blocks.bytes() + REGIONS / 8
    }

    fn regrowing(&self) -> std::sync::RwLockReadGuard<'_, Option<Arc<Filter>>> {
        self.regrowth.read().unwrap_or_else(|p| p.into_inner())
    }

    fn set_regrowing(&self, filter: Option<Arc<Filter>>) {
        *self.regrowth.write().unwrap_or_else(|p| p.into_inner()) = filter;
    }

    /// Whether a miss asks [`REGROW_AT`] or more filters of keys, which one regrown filter
    /// would answer.
    pub(crate) fn regrowth_due(&self) -> bool {
        self.keys.filters().count() >= REGROW_AT
    }

    /// Starts a filter with room for [`REGROWN_ROOM`] times `index_keys` (or the keys the
    /// chain was given, if more) that every key added from now on goes to. Precondition: no
    /// batch is between adding its keys and its commit (the caller holds the state table's
    /// gate), and the caller then adds every key of the index to it, by scans opened after this.
    pub(crate) fn start_regrowth(&self, index_keys: u64) -> Regrowth {
        let keys = index_keys.max(self.keys.added());
        let filter = Arc::new(Filter::new(
            keys.saturating_mul(REGROWN_ROOM).max(FIRST_CAPACITY),
        ));
        self.set_regrowing(Some(Arc::clone(&filter)));
        Regrowth(filter)
    }

    /// Puts a regrowth its scan filled in place of the chain of keys.
    pub(crate) fn finish_regrowth(&self, regrowth: Regrowth) {
        let capacity = regrowth.0.capacity;
        let put = self.keys.put_in_place(regrowth.0);
        // Only now: until the filter is in the chain, a key added must reach it here.
        self.set_regrowing(None);
        if put {
            tracing::info!(
                capacity,
                bytes = self.bytes(),
                "index presence filter regrown: one filter asked per miss"
            );
        } else {
            tracing::warn!("index presence filter not regrown: its chain has no slot left");
        }
    }

    /// Drops a regrowth its scan did not fill (the build was stopped or given up).
    pub(crate) fn abandon_regrowth(&self) {
        self.set_regrowing(None);
    }
}

/// The /16s of each address family ([`BlockBits::region`]) that hold a block of length 16 or
/// more: an exact set of 16 KiB, which stays in the cache where a filter of blocks is a miss
/// per probe. Like the filters, only ever added to.
struct Regions(Box<[AtomicU64]>);

impl Default for Regions {
    fn default() -> Regions {
        Regions((0..REGIONS / 64).map(|_| AtomicU64::new(0)).collect())
    }
}

impl Regions {
    fn add(&self, region: usize) {
        if let Some(word) = self.0.get(region / 64) {
            word.fetch_or(1 << (region % 64), Ordering::AcqRel);
        }
    }

    /// Whether `region` holds a block; a number out of range may hold any.
    fn holds(&self, region: usize) -> bool {
        self.0
            .get(region / 64)
            .is_none_or(|w| w.load(Ordering::Acquire) & (1 << (region % 64)) != 0)
    }
}

/// A growing chain of filters.
///
/// Reads take no lock: filters are only ever appended, each in the next slot and set once, so
/// the filters are the slots from `first` up to the first unset one (a lock word written by
/// every read bounced between the cores and cost more than the filter itself).
struct Chain {
    slots: [OnceLock<Arc<Filter>>; MAX_FILTERS],
    /// The first slot asked: a regrown filter holds every key of the slots before it. A reader
    /// that read an earlier `first` asks more filters than it needs, never fewer.
    first: AtomicUsize,
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
            first: AtomicUsize::new(0),
            growing: Mutex::new(()),
        };
        let _ = c.slots[0].set(Arc::new(Filter::new(capacity)));
        c
    }

    fn may_hold(&self, h: Hash) -> bool {
        self.filters().any(|f| f.may_hold(h))
    }

    /// [`Chain::may_hold`] of each of `hashes` into `held` (all false when asked), asked of
    /// each filter for all of them at once.
    fn may_hold_each(&self, hashes: &[Hash], held: &mut [bool]) {
        for f in self.filters() {
            for (h, held) in hashes.iter().zip(held.iter_mut()) {
                *held |= f.may_hold_unbranched(*h);
            }
        }
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
        let len = self.slots_set();
        match self.filters().last() {
            Some(last) if !last.full() => last.add(h),
            // Past the last slot (2^44 keys) the last filter takes more than its capacity.
            Some(last) if len == MAX_FILTERS => last.add(h),
            last => {
                let capacity = last.map_or(FIRST_CAPACITY, |f| f.capacity * 2);
                let next = Filter::new(capacity);
                next.add(h);
                let _ = self.slots[len].set(Arc::new(next));
            }
        }
    }

    /// Appends `filter`, which holds every key of the chain, and asks it first from now on;
    /// false if no slot is left.
    fn put_in_place(&self, filter: Arc<Filter>) -> bool {
        let _growing = self.growing.lock().unwrap_or_else(|p| p.into_inner());
        let len = self.slots_set();
        if len == MAX_FILTERS {
            return false;
        }
        let _ = self.slots[len].set(filter);
        self.first.store(len, Ordering::Release);
        true
    }

    /// Memory held, the filters no longer asked included.
    fn bytes(&self) -> usize {
        self.slots
            .iter()
            .map_while(OnceLock::get)
            .map(|f| std::mem::size_of_val(&*f.blocks))
            .sum()
    }

    /// Keys added to the filters asked.
    fn added(&self) -> u64 {
        self.filters()
            .map(|f| f.added.load(Ordering::Relaxed))
            .sum()
    }

    fn slots_set(&self) -> usize {
        self.slots.iter().take_while(|s| s.get().is_some()).count()
    }

    /// The filters asked.
    fn filters(&self) -> impl Iterator<Item = &Filter> {
        let first = self.first.load(Ordering::Acquire);
        self.slots[first..]
            .iter()
            .map_while(OnceLock::get)
            .map(|f| &**f)
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

/// Index keys read through one view of the store by the fill: a view held for a whole scan
/// of 10M keys, while writes go on, would keep every version they replace from being merged
/// away (as the state table's builder found, at twice its memory).
const FILL_CHUNK: usize = 65_536;

/// Adds every index key; `None` if told to stop first. In chunks, each through a fresh view:
/// a key committed after its chunk was read was added by its writer before the commit.
fn fill(db: &Kv, presence: &Presence, stop: &AtomicBool) -> Result<Option<u64>, StoreError> {
    use std::ops::Bound;
    let end = Bound::Excluded(vec![keys::INDEX + 1]);
    let mut from = Bound::Included(vec![keys::INDEX]);
    let mut n = 0u64;
    loop {
        let mut last = None;
        for key in db
            .range((from.clone(), end.clone()))
            .keys()
            .take(FILL_CHUNK)
        {
            let key = key?;
            presence.add(&key);
            last = Some(key.to_vec());
            n += 1;
            if n.is_multiple_of(STOP_CHECK_EVERY) && stop.load(Ordering::Acquire) {
                return Ok(None);
            }
        }
        match last {
            Some(key) => from = Bound::Excluded(key),
            None => return Ok(Some(n)),
        }
    }
}

#[cfg(test)]
impl Presence {
    /// A presence taken as filled from the start (an empty store's).
    pub(crate) fn filled_empty() -> Presence {
        let p = Presence::default();
        p.filled.store(true, Ordering::Release);
        p
    }

    /// The filters of keys a miss asks.
    pub(crate) fn filter_count(&self) -> usize {
        self.keys.filters().count()
    }

    /// Marks an empty store's presence filled (there is nothing on disk to add).
    pub(crate) fn mark_filled(&self) {
        self.filled.store(true, Ordering::Release);
    }
}

#[cfg(test)]
#[path = "presence_tests.rs"]
mod tests;

//! Which listed indicators contain a value: the CIDR blocks around an address and the parent
//! domains of a domain, as the canonical indicators to look up.
//!
//! A store answers containment with point reads, not scans: it remembers which prefix lengths
//! any listed block has ([`PrefixLengths`]), and an address is probed once per such length, its
//! host bits cleared. Real lists use a handful of lengths (/8, /16, /24, /32), so a lookup costs
//! a few reads whatever the number of blocks. A store that keeps a filter of the blocks it
//! holds, keyed on [`BlockBits`], spares even those: [`containers_where`] names only the blocks
//! the filter may hold, without formatting the others.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::indicator::{text_with_room, Indicator, IndicatorType, IPV6_TEXT};
use smallvec::{smallvec, SmallVec};

/// The prefix lengths of the CIDR blocks a store holds, per address family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixLengths {
    /// Bit `p` set: some IPv4 block `/p` is held (0 ≤ p ≤ 32).
    v4: u64,
    /// Bit `p` of the 129-bit set, low word first (0 ≤ p ≤ 128).
    v6: [u64; 3],
}

impl PrefixLengths {
    /// Records the length of `cidr` (a canonical CIDR indicator); other types change nothing.
    /// Says whether the set grew.
    pub fn record(&mut self, cidr: &Indicator) -> bool {
        let Some((addr, len)) = block(cidr) else {
            return false;
        };
        let before = *self;
        match addr {
            IpAddr::V4(_) => self.v4 |= 1 << len,
            IpAddr::V6(_) => self.v6[usize::from(len / 64)] |= 1 << (len % 64),
        }
        before != *self
    }

    /// Adds every length of `other`.
    pub fn union(&mut self, other: &PrefixLengths) {
        self.v4 |= other.v4;
        for (a, b) in self.v6.iter_mut().zip(other.v6) {
            *a |= b;
        }
    }

    /// Only the IPv6 lengths of 96 and more, the blocks that may hold an IPv4-mapped address
    /// (`::/0` lists no IPv4 address), and the IPv4 lengths.
    pub fn mapped_range(&self) -> PrefixLengths {
        let mut v6 = self.v6;
        // Lengths 0 to 63, then 64 to 95.
        v6[0] = 0;
        v6[1] &= !((1u64 << 32) - 1);
        PrefixLengths { v4: self.v4, v6 }
    }

    /// The IPv4 lengths held, longest first.
    pub fn v4(&self) -> impl Iterator<Item = u8> {
        SetBitsDown {
            words: [self.v4, 0, 0],
            word: 1,
        }
    }

    /// The IPv6 lengths held, longest first.
    pub fn v6(&self) -> impl Iterator<Item = u8> {
        SetBitsDown {
            words: self.v6,
            word: 3,
        }
    }

    /// A fixed-size encoding, for storing the set beside an index.
    pub fn to_bytes(self) -> [u8; 32] {
        let mut out = [0; 32];
        out[..8].copy_from_slice(&self.v4.to_be_bytes());
        for (i, w) in self.v6.iter().enumerate() {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// The inverse of [`PrefixLengths::to_bytes`]; `None` for any other length or bits no
    /// prefix can have.
    pub fn from_bytes(bytes: &[u8]) -> Option<PrefixLengths> {
        let bytes: &[u8; 32] = bytes.try_into().ok()?;
        let word = |i: usize| {
            let mut w = [0; 8];
            w.copy_from_slice(&bytes[8 * i..8 * i + 8]);
            u64::from_be_bytes(w)
        };
        let set = PrefixLengths {
            v4: word(0),
            v6: [word(1), word(2), word(3)],
        };
        let valid = set.v4 >> 33 == 0 && set.v6[2] >> 1 == 0;
        valid.then_some(set)
    }
}

/// The set bits of `words` (low word first) below word `word`, highest first: a lookup of an
/// IPv4 address walks the IPv6 lengths too (its mapped form), and testing all 129 bits one by
/// one was a sixtieth of a lookup's CPU.
struct SetBitsDown {
    words: [u64; 3],
    word: usize,
}

impl Iterator for SetBitsDown {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        while let Some(i) = self.word.checked_sub(1) {
            let w = &mut self.words[i];
            if *w != 0 {
                let bit = 63 - w.leading_zeros();
                *w &= !(1u64 << bit);
                // At most 3 × 64 - 1: fits.
                return Some((i * 64) as u8 + bit as u8);
            }
            self.word = i;
        }
        None
    }
}

/// How a listed indicator matched a looked-up value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchKind {
    /// The value itself is listed.
    Exact,
    /// A listed CIDR block contains the address (or the block) looked up.
    CidrContains,
    /// A listed domain is a parent of the domain (or of the URL's or e-mail's host).
    ParentDomain,
}

/// A CIDR block by its bits, not its text: address family, prefix length and network address
/// (host bits cleared). What a filter of held blocks is keyed on, so a lookup tells a block
/// nobody listed without formatting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockBits {
    bytes: [u8; 18],
    len: u8,
}

impl BlockBits {
    /// The block's network address and prefix length.
    fn network(&self) -> (IpAddr, u8) {
        let b = &self.bytes;
        let addr = match b[0] {
            4 => IpAddr::V4(Ipv4Addr::new(b[2], b[3], b[4], b[5])),
            _ => {
                let mut v6 = [0u8; 16];
                v6.copy_from_slice(&b[2..18]);
                IpAddr::V6(Ipv6Addr::from(v6))
            }
        };
        (addr, b[1])
    }

    /// The block of length `prefix` around `addr` (`prefix` at most the family's width).
    pub fn around(addr: IpAddr, prefix: u8) -> BlockBits {
        BlockBits::of_network(masked(addr, prefix), prefix)
    }

    /// The block `network/prefix`, `network` with its host bits already cleared.
    fn of_network(network: IpAddr, prefix: u8) -> BlockBits {
        let mut bytes = [0u8; 18];
        bytes[1] = prefix;
        let len = match network {
            IpAddr::V4(v4) => {
                bytes[0] = 4;
                bytes[2..6].copy_from_slice(&v4.octets());
                6
            }
            IpAddr::V6(v6) => {
                bytes[0] = 6;
                bytes[2..18].copy_from_slice(&v6.octets());
                18
            }
        };
        BlockBits { bytes, len }
    }

    /// The block a canonical CIDR value (`network/length`) names; `None` if it names none.
    pub fn of_cidr(value: &str) -> Option<BlockBits> {
        let (addr, len) = parse_block(value)?;
        Some(BlockBits::around(addr, len))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The /16 of its address family the block lies in, numbered `0..REGIONS` (the IPv6 ones
    /// after the IPv4 ones); `None` for a block shorter than /16, which spans several.
    pub fn region(&self) -> Option<usize> {
        if self.bytes[1] < 16 {
            return None;
        }
        let top = usize::from(u16::from_be_bytes([self.bytes[2], self.bytes[3]]));
        match self.bytes[0] {
            4 => Some(top),
            _ => Some(REGIONS / 2 + top),
        }
    }
}

/// The /16s of both address families, as [`BlockBits::region`] numbers them.
pub const REGIONS: usize = 2 << 16;

/// Which CIDR blocks an index may hold: false only for a block it certainly does not hold.
///
/// Asked a batch at a time (the blocks around an address at every held length together), so
/// an implementation can read the memory of all of them at once rather than wait on each in
/// turn: for a filter larger than the caches, each is a miss (perf, `bench scale`). Answers go
/// into the caller's slice: a lookup asks this of nearly every address, and the vectors of
/// blocks and answers were a twentieth of its allocations.
pub trait HeldBlocks {
    /// Clears `held[i]` where the index certainly holds no block `blocks[i]`. `held` is as long
    /// as `blocks` and all true when asked: an answer not given is "may be held".
    fn may_hold_each(&self, blocks: &[BlockBits], held: &mut [bool]);
}

impl<F: Fn(&BlockBits) -> bool> HeldBlocks for F {
    fn may_hold_each(&self, blocks: &[BlockBits], held: &mut [bool]) {
        for (block, held) in blocks.iter().zip(held) {
            *held &= self(block);
        }
    }
}

/// Whether `held` may hold `block`.
fn may_hold_one(held: &dyn HeldBlocks, block: BlockBits) -> bool {
    let mut answer = [true];
    held.may_hold_each(std::slice::from_ref(&block), &mut answer);
    answer[0]
}

/// Blocks around one address held without an allocation (here and by a `HeldBlocks` asked of
/// them): every IPv4 length, /0 to /32, and as many IPv6 ones (more spill to the heap).
pub const INLINE_BLOCKS: usize = 33;

/// The listed indicators that would contain `value`, most specific first, not `value` itself:
/// for an address, each block of a held length around it; for a block, each shorter held block
/// around it; for a domain, each parent domain with at least two labels left ("com" is no
/// indicator of anything). Other types have none.
pub fn containers(value: &Indicator, lengths: &PrefixLengths) -> Vec<(Indicator, MatchKind)> {
    containers_where(value, lengths, &|_: &BlockBits| true)
}

/// [`containers`], leaving out every block `may_hold` says is not held.
pub fn containers_where(
    value: &Indicator,
    lengths: &PrefixLengths,
    may_hold: &dyn HeldBlocks,
) -> Vec<(Indicator, MatchKind)> {
    match value.ty() {
        IndicatorType::Ipv4 | IndicatorType::Ipv6 | IndicatorType::Cidr => Network::of(value)
            .map(|n| containers_of(n, lengths, may_hold))
            .unwrap_or_default(),
        IndicatorType::Domain => parent_domains(value.value()),
        _ => Vec::new(),
    }
}

/// An address or a block read from its canonical text once: a lookup asks for its other forms,
/// what contains it and what contains its form in the other family, and reading the text for
/// each (the other form's IPv6 text above all) was a fiftieth of a lookup's CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    len: u8,
    /// A block (a CIDR value), not an address; a whole-length block is one too.
    is_block: bool,
}

impl Network {
    /// The address or block `value` names; `None` for other types and values that name none.
    pub fn of(value: &Indicator) -> Option<Network> {
        match value.ty() {
            IndicatorType::Ipv4 | IndicatorType::Ipv6 => {
                let addr = value.value().parse::<IpAddr>().ok()?;
                Some(Network {
                    addr,
                    len: max_len(addr),
                    is_block: false,
                })
            }
            IndicatorType::Cidr => block(value).map(|(addr, len)| Network {
                addr,
                len,
                is_block: true,
            }),
            _ => None,
        }
    }

    /// The same addresses in the other family: an IPv4 address or block as IPv4-mapped IPv6,
    /// and the reverse (`None` for IPv6 outside the mapped range); an address when it is one
    /// address.
    pub fn other(&self) -> Option<Network> {
        let (addr, len) = match self.addr {
            IpAddr::V4(a) => (IpAddr::V6(a.to_ipv6_mapped()), self.len + 96),
            IpAddr::V6(a) => (IpAddr::V4(a.to_ipv4_mapped()?), self.len.checked_sub(96)?),
        };
        Some(Network {
            addr,
            len,
            is_block: len < max_len(addr),
        })
    }

    /// Whether it is in the IPv6 family.
    pub fn is_v6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// Its canonical indicator.
    fn indicator(&self) -> Indicator {
        match self.is_block {
            true => Indicator::canonical(IndicatorType::Cidr, block_text(self.addr, self.len)),
            false => Indicator::canonical(address_type(self.addr), address_text(self.addr)),
        }
    }
}

/// [`containers_where`] of an address or a block: the held blocks strictly shorter than a
/// block, or up to the whole length around an address.
pub fn containers_of(
    n: Network,
    lengths: &PrefixLengths,
    may_hold: &dyn HeldBlocks,
) -> Vec<(Indicator, MatchKind)> {
    let below = match n.is_block {
        true => n.len,
        false => max_len(n.addr) + 1,
    };
    blocks_around(n.addr, below, lengths, may_hold)
}

/// An address's or block's other forms, as a lookup probes them: the addresses and blocks that
/// name the same addresses written otherwise (a whole-length block's address; an IPv4 address
/// or block and its IPv4-mapped IPv6 form, and the reverse; a block form only where `may_hold`),
/// but the whole-length blocks around an address, which its containers (and those of its form
/// in the other family) already are; and that form in the other address family, whose
/// containers also contain it (`None` for other types, and for IPv6 outside the mapped range).
pub fn other_forms(
    value: &Indicator,
    may_hold: &dyn HeldBlocks,
) -> (Vec<Indicator>, Option<Indicator>) {
    match Network::of(value) {
        Some(n) => {
            let (forms, other) = other_forms_of(n, may_hold);
            (forms, other.map(|o| o.indicator()))
        }
        None => (Vec::new(), None),
    }
}

/// [`other_forms`] of an address or a block, the form in the other family given as read (a
/// lookup asks for its blocks, not its text).
pub fn other_forms_of(n: Network, may_hold: &dyn HeldBlocks) -> (Vec<Indicator>, Option<Network>) {
    let mut forms = Vec::new();
    if n.is_block && n.len == max_len(n.addr) {
        forms.push(
            Network {
                is_block: false,
                ..n
            }
            .indicator(),
        );
    }
    let Some(other) = n.other() else {
        return (forms, None);
    };
    if !other.is_block || may_hold_one(may_hold, BlockBits::of_network(other.addr, other.len)) {
        forms.push(other.indicator());
    }
    (forms, Some(other))
}

fn address_type(addr: IpAddr) -> IndicatorType {
    match addr {
        IpAddr::V4(_) => IndicatorType::Ipv4,
        IpAddr::V6(_) => IndicatorType::Ipv6,
    }
}

fn max_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Held blocks strictly shorter than `below` that contain `addr`, longest first.
fn blocks_around(
    addr: IpAddr,
    below: u8,
    lengths: &PrefixLengths,
    may_hold: &dyn HeldBlocks,
) -> Vec<(Indicator, MatchKind)> {
    let (mut v4, mut v6) = (lengths.v4(), lengths.v6());
    let held: &mut dyn Iterator<Item = u8> = match addr {
        IpAddr::V4(_) => &mut v4,
        IpAddr::V6(_) => &mut v6,
    };
    // On the stack (and not zeroed first: a full array of them cost a memset as large as
    // the rest of this): most addresses have no block around them listed, and then this
    // allocates nothing.
    let bits: SmallVec<[BlockBits; INLINE_BLOCKS]> = held
        .filter(|&p| p < below)
        .map(|p| BlockBits::of_network(masked(addr, p), p))
        .collect();
    let mut held: SmallVec<[bool; INLINE_BLOCKS]> = smallvec![true; bits.len()];
    may_hold.may_hold_each(&bits, &mut held);
    (bits.iter().zip(held.iter()))
        .filter(|(_, held)| **held)
        .map(|(block, _)| {
            let (network, p) = block.network();
            let cidr = Indicator::canonical(IndicatorType::Cidr, block_text(network, p));
            (cidr, MatchKind::CidrContains)
        })
        .collect()
}

/// `network/prefix` as canonical text. An IPv4 network is written digit by digit: a lookup
/// of an address writes a block per held length it cannot rule out, and `Display` through
/// `format!` was a tenth of a lookup's candidates (perf, `bench scale`).
fn block_text(network: IpAddr, prefix: u8) -> String {
    let IpAddr::V4(v4) = network else {
        return text_with_room(format_args!("{network}/{prefix}"), IPV6_TEXT + 4);
    };
    let mut out = String::with_capacity(18);
    push_ipv4(&mut out, v4);
    out.push('/');
    push_decimal(&mut out, prefix);
    out
}

/// An address's canonical text, as `Display` writes it: an IPv4 address and an IPv4-mapped
/// IPv6 one (every IPv4 lookup's other form) digit by digit, which took a sixteenth of a
/// lookup's CPU through the formatter.
fn address_text(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            push_ipv4(&mut out, v4);
            out
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => {
                let mut out = String::with_capacity(22);
                out.push_str("::ffff:");
                push_ipv4(&mut out, v4);
                out
            }
            None => text_with_room(v6, IPV6_TEXT),
        },
    }
}

fn push_ipv4(out: &mut String, v4: Ipv4Addr) {
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(out, octet);
    }
}

fn push_decimal(out: &mut String, n: u8) {
    if n >= 100 {
        out.push(char::from(b'0' + n / 100));
    }
    if n >= 10 {
        out.push(char::from(b'0' + n / 10 % 10));
    }
    out.push(char::from(b'0' + n % 10));
}

fn masked(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// The network address and length of a canonical CIDR indicator.
fn block(cidr: &Indicator) -> Option<(IpAddr, u8)> {
    if cidr.ty() != IndicatorType::Cidr {
        return None;
    }
    parse_block(cidr.value())
}

fn parse_block(value: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = value.rsplit_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= max_len(addr)).then_some((addr, len))
}

fn parent_domains(domain: &str) -> Vec<(Indicator, MatchKind)> {
    let mut out = Vec::new();
    let mut rest = domain;
    while let Some((_, parent)) = rest.split_once('.') {
        if !parent.contains('.') {
            break;
        }
        out.push((
            Indicator::canonical(IndicatorType::Domain, parent.to_string()),
            MatchKind::ParentDomain,
        ));
        rest = parent;
    }
    out
}

#[cfg(test)]
#[path = "containment_tests.rs"]
mod tests;

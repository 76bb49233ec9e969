//! Real-shaped indicators for the scale and federation benches: slot `n` (any u64 below
//! about 2^40) names one canonical indicator, distinct from every other slot's, so a bench can
//! list slots `0..N`, look some of them up again as hits, and look up slots `N..` as misses.
//!
//! The mix is a threat feed's: per thousand slots, 220 IPv4 addresses, 50 IPv6, 40 IPv4 and 10
//! IPv6 CIDR blocks of several prefix lengths, 250 domains, 180 URLs, 50 e-mail addresses and
//! 200 file hashes (md5, sha1, sha256). Values are synthetic but keep real shapes (hyphenated
//! lure words under common and abused TLDs, paths with droppers and gates, webmail senders),
//! so entry sizes and index keys are what a real list gives. Listed single IPv4 addresses never
//! fall in 128.0.0.0/2 and single IPv6 addresses never in 2c0f::/16, where the blocks are, so
//! an address drawn inside a block ([`inside_block`]) is listed only through its block.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use anyhow::Context;
use intelmesh_core::entry::sha256;
use intelmesh_core::indicator::normalize;
use intelmesh_core::{Indicator, IndicatorType};
use intelmesh_proto::v1 as pb;
use rand::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ipv4,
    Ipv6,
    CidrV4,
    CidrV6,
    Domain,
    Url,
    Email,
    Md5,
    Sha1,
    Sha256,
}

/// Slots of each kind per thousand.
const MIX: [(Kind, u64); 10] = [
    (Kind::Ipv4, 220),
    (Kind::Ipv6, 50),
    (Kind::CidrV4, 40),
    (Kind::CidrV6, 10),
    (Kind::Domain, 250),
    (Kind::Url, 180),
    (Kind::Email, 50),
    (Kind::Md5, 60),
    (Kind::Sha1, 40),
    (Kind::Sha256, 100),
];
const PERIOD: u64 = 1000;

/// IPv4 block lengths per fifty blocks: mostly /24s, as real block lists are.
const V4_PREFIXES: [(u8, u64); 6] = [(16, 1), (20, 4), (22, 5), (24, 30), (28, 7), (32, 3)];
const V6_PREFIXES: [(u8, u64); 3] = [(32, 1), (48, 4), (64, 5)];

const WORDS: [&str; 24] = [
    "login", "secure", "update", "cdn", "mail", "account", "verify", "portal", "cloud", "api",
    "auth", "pay", "support", "service", "office", "drive", "docs", "wallet", "bank", "shop",
    "track", "invoice", "sync", "static",
];
const TLDS: [&str; 16] = [
    "com", "net", "org", "info", "xyz", "top", "ru", "cn", "io", "biz", "online", "site", "club",
    "cc", "su", "live",
];
const PATHS: [&str; 8] = [
    "wp-content/uploads",
    "gate",
    "panel",
    "files",
    "download",
    "admin/js",
    "images",
    "tmp",
];
const FILES: [&str; 6] = ["php", "exe", "zip", "js", "html", "dll"];
const MAILERS: [&str; 8] = [
    "gmail.com",
    "outlook.com",
    "proton.me",
    "mail.ru",
    "yandex.ru",
    "qq.com",
    "gmx.de",
    "yahoo.com",
];
const FAMILIES: [&str; 12] = [
    "emotet",
    "qakbot",
    "cobaltstrike",
    "asyncrat",
    "redline",
    "lokibot",
    "agenttesla",
    "icedid",
    "formbook",
    "mirai",
    "raccoon",
    "lumma",
];

/// For each position in a period: its kind and how many of that kind come before it.
fn table() -> &'static [(Kind, u64); PERIOD as usize] {
    static TABLE: OnceLock<[(Kind, u64); PERIOD as usize]> = OnceLock::new();
    TABLE.get_or_init(|| {
        // Kinds in MIX order, then spread over the period by a fixed shuffle.
        let kinds: Vec<Kind> = MIX
            .iter()
            .flat_map(|(k, n)| std::iter::repeat_n(*k, *n as usize))
            .collect();
        let mut order: Vec<u64> = (0..PERIOD).collect();
        order.sort_by_key(|p| mix(*p ^ 0x5eed));
        let mut at = [(Kind::Ipv4, 0); PERIOD as usize];
        for (kind, pos) in kinds.iter().zip(&order) {
            at[*pos as usize].0 = *kind;
        }
        let mut seen = [0u64; MIX.len()];
        for slot in at.iter_mut() {
            let k = MIX.iter().position(|(k, _)| *k == slot.0).unwrap_or(0);
            slot.1 = seen[k];
            seen[k] += 1;
        }
        at
    })
}

/// The kind of `slot` and its index among the slots of that kind.
fn kind_of(slot: u64) -> (Kind, u64) {
    let (kind, rank) = table()[(slot % PERIOD) as usize];
    let per_period = MIX.iter().find(|(k, _)| *k == kind).map_or(1, |(_, n)| *n);
    (kind, slot / PERIOD * per_period + rank)
}

/// splitmix64's finalizer: a bijection of u64 that scatters neighbouring inputs.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A bijection of `0..2^bits` (1 ≤ bits ≤ 64): distinct inputs stay distinct, neighbours
/// scatter. Multiplying by an odd number and xor-shifting are both invertible modulo 2^bits.
fn scramble(x: u64, bits: u32) -> u64 {
    let mask = if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    };
    let shift = bits.div_ceil(2);
    let mut x = x & mask;
    for k in [0x9e37_79b9_7f4a_7c15u64, 0xbf58_476d_1ce4_e5b9] {
        x = x.wrapping_mul(k) & mask;
        x ^= x >> shift;
    }
    x
}

/// A prefix length from a pattern of (length, count) and the index among blocks of that length.
fn prefix_of(i: u64, pattern: &[(u8, u64)]) -> (u8, u64) {
    let period: u64 = pattern.iter().map(|(_, n)| n).sum();
    let mut r = i % period;
    for (len, n) in pattern {
        if r < *n {
            return (*len, i / period * n + r);
        }
        r -= n;
    }
    (pattern[0].0, i)
}

fn base36(mut x: u64, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for c in out.iter_mut().rev() {
        *c = DIGITS[(x % 36) as usize];
        x /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn pick<T: Copy>(list: &[T], x: u64) -> T {
    list[(x % list.len() as u64) as usize]
}

/// First octets of single IPv4 addresses: public unicast, outside the blocks' 128.0.0.0/2.
fn v4_octets() -> &'static [u32] {
    static OCTETS: OnceLock<Vec<u32>> = OnceLock::new();
    OCTETS.get_or_init(|| {
        (1..=223)
            .filter(|o| ![10, 127].contains(o) && !(128..=191).contains(o))
            .collect()
    })
}

/// Where the IPv4 and IPv6 blocks live.
const V4_BLOCKS: u32 = 0x8000_0000;
const V4_BLOCK_BITS: u32 = 30;
const V6_BLOCKS: u128 = 0x2c0f << 112;
const V6_SINGLES: u128 = 0x2a0b << 112;

/// The network and prefix length of the block of kind `kind` with index `i`.
fn block(kind: Kind, i: u64) -> (u128, u8) {
    if kind == Kind::CidrV4 {
        let (len, g) = prefix_of(i, &V4_PREFIXES);
        let bits = u32::from(len) - (32 - V4_BLOCK_BITS);
        let net = V4_BLOCKS | ((scramble(g, bits) as u32) << (32 - u32::from(len)));
        (u128::from(net), len)
    } else {
        let (len, g) = prefix_of(i, &V6_PREFIXES);
        let bits = u32::from(len) - 16;
        let net = V6_BLOCKS | (u128::from(scramble(g, bits)) << (128 - u32::from(len)));
        (net, len)
    }
}

/// The raw text of slot `slot`'s indicator, and its type.
fn raw(slot: u64) -> (IndicatorType, String) {
    let (kind, i) = kind_of(slot);
    let h = mix(slot);
    let token = |bits, width| base36(scramble(i, bits), width);
    match kind {
        Kind::Ipv4 => {
            let octets = v4_octets();
            let first = octets[(i % octets.len() as u64) as usize];
            let rest = scramble(i / octets.len() as u64, 24) as u32;
            let addr = Ipv4Addr::from((first << 24) | rest);
            (IndicatorType::Ipv4, addr.to_string())
        }
        Kind::Ipv6 => {
            let addr =
                V6_SINGLES | (u128::from(scramble(i, 48)) << 64) | u128::from(h & 0xffff_ffff);
            (IndicatorType::Ipv6, Ipv6Addr::from(addr).to_string())
        }
        Kind::CidrV4 => {
            let (net, len) = block(kind, i);
            let net = Ipv4Addr::from(net as u32);
            (IndicatorType::Cidr, format!("{net}/{len}"))
        }
        Kind::CidrV6 => {
            let (net, len) = block(kind, i);
            (
                IndicatorType::Cidr,
                format!("{}/{len}", Ipv6Addr::from(net)),
            )
        }
        Kind::Domain => {
            let name = format!(
                "{}-{}{}.{}",
                pick(&WORDS, h),
                pick(&WORDS, h >> 8),
                token(40, 8),
                pick(&TLDS, h >> 16)
            );
            let value = if h.is_multiple_of(4) {
                format!("{}.{name}", pick(&WORDS, h >> 24))
            } else {
                name
            };
            (IndicatorType::Domain, value)
        }
        Kind::Url => {
            let host = if h.is_multiple_of(7) {
                Ipv4Addr::from((h >> 32) as u32 | 0x0100_0000).to_string()
            } else {
                format!(
                    "{}{}.{}",
                    pick(&WORDS, h >> 8),
                    h % 997,
                    pick(&TLDS, h >> 16)
                )
            };
            let query = if h.is_multiple_of(3) {
                format!("?id={}", h % 100_000)
            } else {
                String::new()
            };
            let value = format!(
                "{}://{host}/{}/{}.{}{query}",
                if h % 5 < 2 { "http" } else { "https" },
                pick(&PATHS, h >> 24),
                token(40, 8),
                pick(&FILES, h >> 28)
            );
            (IndicatorType::Url, value)
        }
        Kind::Email => {
            let domain = if h.is_multiple_of(3) {
                format!(
                    "{}-{}.{}",
                    pick(&WORDS, h >> 8),
                    pick(&WORDS, h >> 12),
                    pick(&TLDS, h >> 16)
                )
            } else {
                pick(&MAILERS, h >> 8).to_string()
            };
            let value = format!(
                "{}.{}{}@{domain}",
                pick(&WORDS, h >> 20),
                pick(&FAMILIES, h >> 24),
                token(40, 8)
            );
            (IndicatorType::Email, value)
        }
        Kind::Md5 | Kind::Sha1 | Kind::Sha256 => {
            let (ty, len) = match kind {
                Kind::Md5 => (IndicatorType::Md5, 32),
                Kind::Sha1 => (IndicatorType::Sha1, 40),
                _ => (IndicatorType::Sha256, 64),
            };
            let digest = hex::encode(sha256(&[&[len as u8][..], &i.to_be_bytes()].concat()));
            (ty, digest[..len].to_string())
        }
    }
}

/// Slot `slot`'s indicator, canonical.
pub(crate) fn indicator(slot: u64) -> anyhow::Result<Indicator> {
    let (ty, value) = raw(slot);
    normalize(ty, &value).with_context(|| format!("bench slot {slot}: {ty} {value:?}"))
}

fn reference(i: &Indicator) -> pb::IndicatorRef {
    pb::IndicatorRef {
        r#type: i.ty().to_proto() as i32,
        value: i.value().to_string(),
    }
}

/// What an origin asserts about slot `slot`'s indicator; `corroboration` for a second origin
/// listing it (a lower confidence, another campaign tag).
pub(crate) fn upsert(slot: u64, corroboration: bool) -> anyhow::Result<pb::IndicatorUpsert> {
    let i = indicator(slot)?;
    let h = mix(slot ^ u64::from(corroboration));
    let threat = match i.ty() {
        IndicatorType::Url | IndicatorType::Email => "phishing",
        IndicatorType::Md5 | IndicatorType::Sha1 | IndicatorType::Sha256 => "malware",
        IndicatorType::Cidr => "scanning",
        _ => "c2",
    };
    Ok(pb::IndicatorUpsert {
        indicator: Some(reference(&i)),
        confidence: if corroboration { 50 } else { 60 } + (h % 40) as u32,
        valid_from_unix_ms: 1_700_000_000_000 + (h % 10_000_000_000) as i64,
        valid_until_unix_ms: (!h.is_multiple_of(3)).then_some(4_100_000_000_000),
        tags: vec![
            pick(&FAMILIES, h >> 8).to_string(),
            format!("campaign-{}", (h >> 16) % 211),
        ],
        threat_types: vec![threat.to_string()],
        description: format!(
            "{} infrastructure reported by incident response",
            pick(&FAMILIES, h >> 8)
        ),
        external_references: vec![],
    })
}

pub(crate) fn upsert_payload(slot: u64, corroboration: bool) -> anyhow::Result<pb::Payload> {
    Ok(pb::Payload {
        body: Some(pb::payload::Body::Upsert(upsert(slot, corroboration)?)),
        ..Default::default()
    })
}

pub(crate) fn revoke_payload(slot: u64) -> anyhow::Result<pb::Payload> {
    Ok(pb::Payload {
        body: Some(pb::payload::Body::Revoke(pb::IndicatorRevoke {
            indicator: Some(reference(&indicator(slot)?)),
            reason: "false positive: shared hosting".into(),
        })),
        ..Default::default()
    })
}

pub(crate) fn sighting_payload(slot: u64) -> anyhow::Result<pb::Payload> {
    let h = mix(slot ^ 0x5157);
    Ok(pb::Payload {
        body: Some(pb::payload::Body::Sighting(pb::Sighting {
            indicator: Some(reference(&indicator(slot)?)),
            seen_at_unix_ms: 1_750_000_000_000 + (h % 1_000_000_000) as i64,
            count: 1 + h % 5,
        })),
        ..Default::default()
    })
}

/// A slot near `slot` whose indicator is a CIDR block.
pub(crate) fn block_slot_near(slot: u64) -> u64 {
    let base = slot - slot % PERIOD;
    let blocks: Vec<u64> = (0..PERIOD)
        .filter(|p| matches!(table()[*p as usize].0, Kind::CidrV4 | Kind::CidrV6))
        .collect();
    base + blocks[(mix(slot) % blocks.len() as u64) as usize]
}

/// An address inside slot `slot`'s block (which must be a block: see [`block_slot_near`]),
/// with random host bits; `None` if the slot is not a block.
pub(crate) fn inside_block(slot: u64, rng: &mut impl Rng) -> Option<String> {
    let (kind, i) = kind_of(slot);
    let (net, len) = match kind {
        Kind::CidrV4 | Kind::CidrV6 => block(kind, i),
        _ => return None,
    };
    let (width, text): (u32, fn(u128) -> String) = if kind == Kind::CidrV4 {
        (32, |a| Ipv4Addr::from(a as u32).to_string())
    } else {
        (128, |a| Ipv6Addr::from(a).to_string())
    };
    let host_bits = width - u32::from(len);
    let host = if host_bits == 0 {
        0
    } else {
        rng.gen::<u128>() & ((1u128 << host_bits) - 1)
    };
    Some(text(net | host))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_slot_is_canonical_distinct_and_the_mix_holds() {
        let mut seen = HashSet::new();
        let mut per_type = std::collections::BTreeMap::new();
        for slot in (0..20_000).chain(8_000_000_000..8_000_002_000) {
            let (ty, raw) = raw(slot);
            let i = indicator(slot).expect("normalizes");
            assert_eq!(i.value(), raw, "slot {slot} is not canonical as generated");
            assert!(seen.insert((i.ty(), raw)), "slot {slot} repeats a value");
            *per_type.entry(ty.as_str()).or_insert(0) += 1;
        }
        assert_eq!(per_type["cidr"], 50 * 22);
        assert_eq!(per_type["ipv4"], 220 * 22);
    }

    #[test]
    fn addresses_inside_blocks_are_only_listed_through_their_block() {
        let mut rng = rand::thread_rng();
        let singles: HashSet<String> = (0..20_000)
            .map(raw)
            .filter(|(ty, _)| matches!(ty, IndicatorType::Ipv4 | IndicatorType::Ipv6))
            .map(|(_, v)| v)
            .collect();
        for slot in (0..20_000).step_by(97) {
            let b = block_slot_near(slot);
            let (ty, cidr) = raw(b);
            assert_eq!(ty, IndicatorType::Cidr);
            let addr = inside_block(b, &mut rng).expect("a block");
            assert!(!singles.contains(&addr));
            let (net, len) = cidr.split_once('/').expect("a block");
            let len: u32 = len.parse().expect("a length");
            let ip: std::net::IpAddr = addr.parse().expect("an address");
            let net: std::net::IpAddr = net.parse().expect("a network");
            match (ip, net) {
                (std::net::IpAddr::V4(a), std::net::IpAddr::V4(n)) => {
                    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                    assert_eq!(u32::from(a) & mask, u32::from(n), "{addr} in {cidr}");
                }
                (std::net::IpAddr::V6(a), std::net::IpAddr::V6(n)) => {
                    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                    assert_eq!(u128::from(a) & mask, u128::from(n), "{addr} in {cidr}");
                }
                _ => panic!("{addr} and {cidr} are of different families"),
            }
        }
    }

    #[test]
    fn scramble_is_a_bijection() {
        for bits in [1, 5, 14, 24] {
            let all: HashSet<u64> = (0..1u64 << bits).map(|x| scramble(x, bits)).collect();
            assert_eq!(all.len(), 1 << bits);
            assert!(all.iter().all(|x| *x < 1 << bits));
        }
    }
}

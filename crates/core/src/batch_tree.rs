//! Batch signatures: the hash tree over headers signed together, its paths, and the root a
//! path leads to.
//!
//! One ed25519 signature costs an origin as much as everything else it does to publish an
//! entry, and a receiver twice that to check it. An origin publishing many entries at once
//! signs the root of a hash tree over their header hashes instead, once; each entry carries the
//! signature and its path to the root ([`pb::BatchPath`], encoded after the 64 signature bytes
//! in `SignedEntry.signature`, so the entry's shape is the same for both kinds), so it still
//! verifies alone, on any path and as a withheld stub, and a receiver checks one signature per
//! batch.
//!
//! The tree is RFC 9162's (2.1.1): leaves `H(0x00 || header_hash)`, inner nodes
//! `H(0x01 || left || right)`, the left subtree always the largest power of two. The two
//! prefixes keep a leaf from ever passing for an inner node. The signed message has its own
//! context prefix ([`BATCH_CONTEXT`]), so a batch signature is never a single entry's.
//! Siblings are hashes of headers, which travel to every member anyway (stubs included), so a
//! path tells a reader nothing a stub does not.

use intelmesh_proto::v1 as pb;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::entry::Hash;

/// Prefix of a signed batch root.
pub const BATCH_CONTEXT: &[u8] = b"intelmesh/v1 entry-batch\0";
/// Most leaves a receiver accepts in one tree (a path of at most 16 siblings).
pub const MAX_LEAVES: u32 = 1 << 16;
/// Longest path accepted; a tree of [`MAX_LEAVES`] needs no more.
pub const MAX_SIBLINGS: usize = 16;
/// Bytes of an ed25519 signature, the start of every signature field.
pub const SIGNATURE_BYTES: usize = 64;
/// Most bytes a path may take after the signature: [`MAX_SIBLINGS`] siblings and the two
/// counters, encoded, with room to spare.
pub const MAX_PATH_BYTES: usize = 640;

/// Why a batch path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathDefect {
    #[error("a batch of {0} leaves (1 to {MAX_LEAVES} allowed)")]
    Size(u32),
    #[error("leaf {index} of a batch of {size}")]
    Index { index: u32, size: u32 },
    #[error("{0} siblings, more than {MAX_SIBLINGS}")]
    TooLong(usize),
    #[error("a sibling of {0} bytes, not 32")]
    SiblingLength(usize),
    #[error("the path's length does not fit its leaf and batch size")]
    Shape,
    #[error("the bytes after the signature are not a batch path")]
    Undecodable,
    #[error("the batch path is not in its one encoding")]
    NotCanonical,
}

/// An entry's signature field: the signature, then the encoded path when it signs a batch.
pub fn signature_field(signature: &[u8; SIGNATURE_BYTES], path: Option<&pb::BatchPath>) -> Vec<u8> {
    let mut field = signature.to_vec();
    if let Some(path) = path {
        field.extend(path.encode_to_vec());
    }
    field
}

/// The path a signature field carries after its first [`SIGNATURE_BYTES`]: `Ok(None)` if
/// nothing follows them. The caller has checked the field is at least that long and at most
/// [`MAX_PATH_BYTES`] longer.
///
/// The path is not signed, so only its one encoding (prost's: fields in order, each once,
/// shortest varints, no unknown fields) is accepted: otherwise a relay could pad or re-encode
/// an entry it passes on and still have it verify.
pub fn path_in(field: &[u8]) -> Result<Option<pb::BatchPath>, PathDefect> {
    match field.get(SIGNATURE_BYTES..) {
        None | Some([]) => Ok(None),
        Some(rest) => {
            let path = pb::BatchPath::decode(rest).map_err(|_| PathDefect::Undecodable)?;
            if path.encode_to_vec() != rest {
                return Err(PathDefect::NotCanonical);
            }
            Ok(Some(path))
        }
    }
}

fn leaf(header_hash: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(header_hash);
    h.finalize().into()
}

fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The message an origin signs for a batch whose tree has `root`.
pub fn signed_root(root: &Hash) -> Vec<u8> {
    let mut msg = Vec::with_capacity(BATCH_CONTEXT.len() + root.len());
    msg.extend_from_slice(BATCH_CONTEXT);
    msg.extend_from_slice(root);
    msg
}

/// The tree over `header_hashes` (at least one): its root and each leaf's path, in order.
///
/// Built level by level, a level's unpaired last node moving up unchanged: the same tree as
/// RFC 9162's recursive definition (tested against it).
pub fn build(header_hashes: &[Hash]) -> (Hash, Vec<pb::BatchPath>) {
    let size = header_hashes.len();
    let mut paths: Vec<pb::BatchPath> = (0..size)
        .map(|i| pb::BatchPath {
            index: i as u32,
            size: size as u32,
            siblings: Vec::new(),
        })
        .collect();
    let mut level: Vec<Hash> = header_hashes.iter().map(leaf).collect();
    // Where each leaf's ancestor sits in the current level.
    let mut at: Vec<usize> = (0..size).collect();
    while level.len() > 1 {
        for (path, pos) in paths.iter_mut().zip(at.iter_mut()) {
            let sibling = *pos ^ 1;
            if sibling < level.len() {
                path.siblings.push(level[sibling].to_vec());
            }
            *pos /= 2;
        }
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => node(l, r),
                [only] => *only,
                _ => unreachable!("chunks of two"),
            })
            .collect();
    }
    let root = level.first().copied().unwrap_or_else(|| leaf(&[0; 32]));
    (root, paths)
}

/// The root that `path` leads to from the leaf of `header_hash` (RFC 9162 2.1.3.2), or why the
/// path is malformed. Costs at most [`MAX_SIBLINGS`] + 1 hashes whatever the sender put in it.
pub fn root_of(header_hash: &Hash, path: &pb::BatchPath) -> Result<Hash, PathDefect> {
    let (index, size) = (path.index, path.size);
    if size == 0 || size > MAX_LEAVES {
        return Err(PathDefect::Size(size));
    }
    if index >= size {
        return Err(PathDefect::Index { index, size });
    }
    if path.siblings.len() > MAX_SIBLINGS {
        return Err(PathDefect::TooLong(path.siblings.len()));
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf(header_hash);
    for sibling in &path.siblings {
        let p: Hash = sibling[..]
            .try_into()
            .map_err(|_| PathDefect::SiblingLength(sibling.len()))?;
        if s == 0 {
            return Err(PathDefect::Shape);
        }
        if f & 1 == 1 || f == s {
            r = node(&p, &r);
            // A last node without a sibling moved up unchanged at these levels.
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node(&r, &p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(PathDefect::Shape);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9162's recursive definition, to check [`build`] against.
    fn rfc_root(leaves: &[Hash]) -> Hash {
        if leaves.len() == 1 {
            return leaf(&leaves[0]);
        }
        let k = leaves.len().next_power_of_two() / 2;
        node(&rfc_root(&leaves[..k]), &rfc_root(&leaves[k..]))
    }

    fn hashes(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| crate::entry::sha256(&i.to_be_bytes()))
            .collect()
    }

    #[test]
    fn every_leaf_of_every_tree_size_leads_to_the_rfc_root() {
        for n in 1..=70 {
            let leaves = hashes(n);
            let (root, paths) = build(&leaves);
            assert_eq!(root, rfc_root(&leaves), "size {n}");
            for (i, path) in paths.iter().enumerate() {
                assert_eq!(root_of(&leaves[i], path), Ok(root), "leaf {i} of {n}");
                assert!(path.siblings.len() <= (n as f64).log2().ceil() as usize);
            }
        }
    }

    #[test]
    fn a_path_leads_elsewhere_for_another_leaf_index_or_sibling() {
        let leaves = hashes(13);
        let (root, paths) = build(&leaves);
        for (i, path) in paths.iter().enumerate() {
            assert_ne!(root_of(&leaves[(i + 1) % 13], path), Ok(root));
            for j in 0..13 {
                let mut moved = path.clone();
                moved.index = j;
                if j as usize != i {
                    assert_ne!(root_of(&leaves[i], &moved), Ok(root), "{i} as {j}");
                }
            }
            for k in 0..path.siblings.len() {
                let mut bent = path.clone();
                bent.siblings[k][0] ^= 1;
                assert_ne!(root_of(&leaves[i], &bent), Ok(root));
            }
        }
    }

    #[test]
    fn malformed_paths_are_refused_before_hashing_much() {
        let leaves = hashes(8);
        let (_, paths) = build(&leaves);
        let with = |f: &dyn Fn(&mut pb::BatchPath)| {
            let mut p = paths[5].clone();
            f(&mut p);
            root_of(&leaves[5], &p)
        };
        assert_eq!(with(&|p| p.size = 0), Err(PathDefect::Size(0)));
        assert_eq!(
            with(&|p| p.size = MAX_LEAVES + 1),
            Err(PathDefect::Size(MAX_LEAVES + 1))
        );
        assert_eq!(
            with(&|p| p.index = 8),
            Err(PathDefect::Index { index: 8, size: 8 })
        );
        assert_eq!(
            with(&|p| p.siblings = vec![vec![0; 32]; 17]),
            Err(PathDefect::TooLong(17))
        );
        assert_eq!(
            with(&|p| p.siblings[1] = vec![0; 31]),
            Err(PathDefect::SiblingLength(31))
        );
        assert_eq!(
            with(&|p| {
                p.siblings.pop();
            }),
            Err(PathDefect::Shape)
        );
        assert_eq!(
            with(&|p| p.siblings.push(vec![0; 32])),
            Err(PathDefect::Shape)
        );
        assert_eq!(with(&|p| p.size = 16), Err(PathDefect::Shape));
    }

    #[test]
    fn a_signed_root_is_never_a_signed_header() {
        let root = [7; 32];
        assert!(signed_root(&root).starts_with(BATCH_CONTEXT));
        assert!(!signed_root(&root).starts_with(crate::entry::SIGNING_CONTEXT));
    }
}

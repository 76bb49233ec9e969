//! The index's running digest: a sum, modulo 2^256, of one SHA-256 per (index key, stored
//! state), kept beside the index and changed in the same batch as the states it covers.
//!
//! Status reports a state digest on every call (operators and the benches compare it across
//! nodes), and hashing the whole index for it cost seconds at millions of indicators, under the
//! store's write lock. A sum can take a state out and put its successor in, so each write costs
//! two hashes per touched indicator and Status reads 32 bytes. It is a convergence check, not a
//! commitment against an adversary: the heads it is hashed with (see
//! `DiskStore::state_digest`) are what binds the logs, and the index is a function of them.

use sha2::{Digest, Sha256};

/// A multiset digest of (key, value) pairs: adding and removing commute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StateSum([u64; 4]);

fn item(key: &[u8], value: &[u8]) -> [u64; 4] {
    let mut h = Sha256::new();
    h.update((key.len() as u64).to_be_bytes());
    h.update(key);
    h.update((value.len() as u64).to_be_bytes());
    h.update(value);
    let d = h.finalize();
    let mut limbs = [0u64; 4];
    for (limb, bytes) in limbs.iter_mut().zip(d.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        *limb = u64::from_le_bytes(b);
    }
    limbs
}

impl StateSum {
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) {
        let x = item(key, value);
        let mut carry = false;
        for (a, b) in self.0.iter_mut().zip(x) {
            let (s, c1) = a.overflowing_add(b);
            let (s, c2) = s.overflowing_add(u64::from(carry));
            *a = s;
            carry = c1 || c2;
        }
    }

    pub(crate) fn remove(&mut self, key: &[u8], value: &[u8]) {
        let x = item(key, value);
        let mut borrow = false;
        for (a, b) in self.0.iter_mut().zip(x) {
            let (s, b1) = a.overflowing_sub(b);
            let (s, b2) = s.overflowing_sub(u64::from(borrow));
            *a = s;
            borrow = b1 || b2;
        }
    }

    pub(crate) fn to_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<StateSum> {
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        let mut limbs = [0u64; 4];
        for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *limb = u64::from_le_bytes(b);
        }
        Some(StateSum(limbs))
    }
}

#[cfg(test)]
mod tests {
    use super::StateSum;

    #[test]
    fn order_of_changes_does_not_matter_and_removal_undoes() {
        let mut a = StateSum::default();
        a.add(b"k1", b"v1");
        a.add(b"k2", b"v2");
        let mut b = StateSum::default();
        b.add(b"k2", b"v2");
        b.add(b"k1", b"old");
        b.remove(b"k1", b"old");
        b.add(b"k1", b"v1");
        assert_eq!(a, b);
        assert_ne!(a, StateSum::default());
        let mut c = a;
        c.remove(b"k1", b"v1");
        c.remove(b"k2", b"v2");
        assert_eq!(c, StateSum::default());
        assert_eq!(StateSum::from_bytes(&a.to_bytes()), Some(a));
        assert_eq!(StateSum::from_bytes(&[0u8; 31]), None);
    }

    #[test]
    fn key_and_value_are_not_interchangeable() {
        let (mut a, mut b) = (StateSum::default(), StateSum::default());
        a.add(b"ab", b"c");
        b.add(b"a", b"bc");
        assert_ne!(a, b);
    }
}

//! HMAC-SHA256 with the key's pads absorbed once. Every record computes two HMACs
//! (the index slot and the event id); deriving the pads anew for each would cost two
//! more SHA-256 blocks per HMAC. The absorbed states are as secret as the key, so they
//! are held here, where they can be wiped on drop (the `hmac` crate's keyed state
//! cannot be), and built on the `sha2` compression function.

use sha2::compress256;
use sha2::digest::generic_array::GenericArray;
use zeroize::Zeroize;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];
const BLOCK: usize = 64;

/// A 32-byte key's HMAC-SHA256 midstates: the states after its inner and outer padded
/// key blocks.
pub(crate) struct HmacKey {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl HmacKey {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let absorb = |pad: u8| {
            let mut block = [pad; BLOCK];
            for (b, k) in block.iter_mut().zip(key) {
                *b ^= k;
            }
            let mut state = IV;
            compress256(&mut state, &[GenericArray::from(block)]);
            block.zeroize();
            state
        };
        Self {
            inner: absorb(0x36),
            outer: absorb(0x5c),
        }
    }

    /// HMAC-SHA256 of the concatenation of `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut inner = finish(self.inner, parts);
        let out = finish(self.outer, &[&inner]);
        inner.zeroize();
        out
    }
}

impl Drop for HmacKey {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

/// SHA-256 of (one block already absorbed into `state`) followed by `parts`.
fn finish(mut state: [u32; 8], parts: &[&[u8]]) -> [u8; 32] {
    let mut buf = [0u8; BLOCK];
    let mut fill = 0;
    let mut total = BLOCK as u64;
    for part in parts {
        total += part.len() as u64;
        let mut rest = *part;
        while !rest.is_empty() {
            let take = rest.len().min(BLOCK - fill);
            buf[fill..fill + take].copy_from_slice(&rest[..take]);
            fill += take;
            rest = &rest[take..];
            if fill == BLOCK {
                compress256(&mut state, &[GenericArray::from(buf)]);
                fill = 0;
            }
        }
    }
    buf[fill] = 0x80;
    buf[fill + 1..].fill(0);
    if fill + 1 > BLOCK - 8 {
        compress256(&mut state, &[GenericArray::from(buf)]);
        buf.fill(0);
    }
    buf[BLOCK - 8..].copy_from_slice(&(total * 8).to_be_bytes());
    compress256(&mut state, &[GenericArray::from(buf)]);
    buf.zeroize();
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    state.zeroize();
    out
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac};
    use rand::{Rng, SeedableRng};
    use sha2::Sha256;

    use super::*;

    #[test]
    fn agrees_with_the_hmac_crate_at_every_length_and_split() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for len in 0..300 {
            let mut key = [0u8; 32];
            rng.fill(&mut key);
            let msg: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            let cut = if len == 0 { 0 } else { rng.gen_range(0..=len) };
            let ours = HmacKey::new(&key).mac(&[&msg[..cut], &msg[cut..]]);
            let mut theirs = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
            theirs.update(&msg);
            assert_eq!(ours[..], theirs.finalize().into_bytes()[..], "length {len}, cut {cut}");
        }
    }
}

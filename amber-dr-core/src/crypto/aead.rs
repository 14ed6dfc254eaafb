//! ChaCha20-Poly1305 (RFC 8439) from aws-lc-rs behind RustCrypto's `aead` traits, so that the
//! STREAM construction of `aead::stream` drives it.
//!
//! Why: the sealed format is ChaCha20-Poly1305 in RustCrypto's STREAM; RustCrypto's own
//! `chacha20poly1305` seals at ~0.6 GB/s on the benchmark machine, aws-lc's assembly
//! (AVX2/AVX-512) at ~3.7 GB/s. Same algorithm, same nonces, same bytes: only the
//! implementation changes (a unit test checks byte equality with RustCrypto's), so the format
//! and every repository written before stay as they are. aws-lc-rs is already in the build
//! (object_store's S3 signing uses it).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce as AwsNonce, UnboundKey, CHACHA20_POLY1305};
use chacha20poly1305::aead::consts::{U0, U12, U16, U32};
use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::{
    AeadCore, AeadInPlace, Error, Key, KeyInit, KeySizeUser, Nonce, Result, Tag,
};

/// ChaCha20-Poly1305 with a 256-bit key, 96-bit nonce and 128-bit tag (aws-lc-rs).
pub struct ChaCha20Poly1305Fast(LessSafeKey);

impl ChaCha20Poly1305Fast {
    /// The cipher for a 32-byte key.
    pub fn from_key(key: &[u8; 32]) -> Self {
        // A 32-byte key is exactly what CHACHA20_POLY1305 takes: this cannot fail.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key)
            .unwrap_or_else(|_| unreachable!("ChaCha20-Poly1305 takes 32-byte keys"));
        Self(LessSafeKey::new(unbound))
    }
}

impl KeySizeUser for ChaCha20Poly1305Fast {
    type KeySize = U32;
}

impl KeyInit for ChaCha20Poly1305Fast {
    fn new(key: &Key<Self>) -> Self {
        let mut k = [0u8; 32];
        k.copy_from_slice(key.as_slice());
        Self::from_key(&k)
    }
}

impl AeadCore for ChaCha20Poly1305Fast {
    type NonceSize = U12;
    type TagSize = U16;
    type CiphertextOverhead = U0;
}

fn nonce(n: &Nonce<ChaCha20Poly1305Fast>) -> Result<AwsNonce> {
    AwsNonce::try_assume_unique_for_key(n.as_slice()).map_err(|_| Error)
}

impl AeadInPlace for ChaCha20Poly1305Fast {
    fn encrypt_in_place_detached(
        &self,
        n: &Nonce<Self>,
        associated_data: &[u8],
        buffer: &mut [u8],
    ) -> Result<Tag<Self>> {
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce(n)?, Aad::from(associated_data), buffer)
            .map_err(|_| Error)?;
        Ok(GenericArray::clone_from_slice(tag.as_ref()))
    }

    fn decrypt_in_place_detached(
        &self,
        n: &Nonce<Self>,
        associated_data: &[u8],
        buffer: &mut [u8],
        tag: &Tag<Self>,
    ) -> Result<()> {
        self.0
            .open_in_place_separate_tag(
                nonce(n)?,
                Aad::from(associated_data),
                tag.as_slice(),
                buffer,
            )
            .map(|_| ())
            .map_err(|_| Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
    use chacha20poly1305::aead::Aead;
    use chacha20poly1305::{ChaCha20Poly1305, KeyInit};

    #[test]
    fn same_bytes_as_rustcrypto_and_opens_what_it_sealed() {
        let key = [0x42u8; 32];
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 256) as u8).collect();
        let prefix = [0u8; 7];
        let mut a =
            EncryptorBE32::from_aead(ChaCha20Poly1305Fast::from_key(&key), (&prefix).into());
        let mut b = EncryptorBE32::from_aead(ChaCha20Poly1305::new(&key.into()), (&prefix).into());
        let mut sealed = Vec::new();
        for c in plain.chunks(65536).take(3) {
            let x = a.encrypt_next(c).expect("seal");
            assert_eq!(x, b.encrypt_next(c).expect("seal"), "chunk differs");
            sealed.push(x);
        }
        let rest = &plain[3 * 65536..];
        let x = a.encrypt_last(rest).expect("seal");
        assert_eq!(x, b.encrypt_last(rest).expect("seal"), "last chunk differs");
        sealed.push(x);
        // RFC 8439 §2.8.2 test vector, through the trait.
        let k: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let n = [7, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47];
        let aad = [
            0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
        ];
        let msg = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let ct = ChaCha20Poly1305Fast::from_key(&k)
            .encrypt(
                (&n).into(),
                chacha20poly1305::aead::Payload { msg, aad: &aad },
            )
            .expect("seal");
        assert_eq!(hex::encode(&ct[..8]), "d31a8d34648e60db");
        assert_eq!(
            hex::encode(&ct[ct.len() - 16..]),
            "1ae10b594f09e26a7e902ecbd0600691"
        );
        // And it opens what it sealed, and refuses a flipped bit.
        let mut d =
            DecryptorBE32::from_aead(ChaCha20Poly1305Fast::from_key(&key), (&prefix).into());
        let mut out = Vec::new();
        for c in &sealed[..3] {
            out.extend(d.decrypt_next(c.as_slice()).expect("open"));
        }
        let mut last = sealed[3].clone();
        last[0] ^= 1;
        assert!(
            d.decrypt_last(last.as_slice()).is_err(),
            "flipped bit opened"
        );
        assert_eq!(out, plain[..3 * 65536]);
    }
}

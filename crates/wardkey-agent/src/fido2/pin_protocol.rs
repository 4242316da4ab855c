//! The CTAP2 PIN/UV auth protocols (CTAP 2.1 §6.5.6 and §6.5.7): how the
//! platform gets a PIN to the authenticator without sending it in clear,
//! and proves to it that the PIN was checked when asking for an assertion.
//!
//! Both sides agree an ECDH P-256 secret over an ephemeral platform key and
//! the authenticator's key-agreement key, derive the shared secret from it,
//! and encrypt (AES-256-CBC, no padding) and authenticate (HMAC-SHA-256)
//! with it. Protocol one is CTAP 2.0's; protocol two (CTAP 2.1) uses HKDF,
//! random IVs and full-length MACs. Shared by the agent's CTAP2 client and
//! the software card that tests it.

use aws_lc_rs::agreement::{self, ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey};
use aws_lc_rs::cipher::{
    AES_256, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey,
};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use ciborium::Value;

/// Why a protocol step failed (a key or message of the wrong shape).
#[derive(Debug, thiserror::Error)]
#[error("PIN protocol: {0}")]
pub struct ProtocolError(pub &'static str);

/// A PIN/UV auth protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinProtocol {
    /// CTAP 2.0.
    One,
    /// CTAP 2.1.
    Two,
}

impl PinProtocol {
    /// The protocol numbered `n` (`pinUvAuthProtocol`), if known.
    pub fn from_number(n: i128) -> Option<Self> {
        match n {
            1 => Some(Self::One),
            2 => Some(Self::Two),
            _ => None,
        }
    }

    /// Its number on the wire.
    pub fn number(self) -> u8 {
        match self {
            Self::One => 1,
            Self::Two => 2,
        }
    }

    /// The shared secret from the ECDH result `z` (its x-coordinate).
    fn kdf(self, z: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        match self {
            Self::One => Ok(digest(&SHA256, z).as_ref().to_vec()),
            Self::Two => {
                let prk = Salt::new(HKDF_SHA256, &[0u8; 32]).extract(z);
                let mut secret = vec![0u8; 64];
                let (hmac_key, aes_key) = secret.split_at_mut(32);
                for (info, out) in [(&b"CTAP2 HMAC key"[..], hmac_key), (&b"CTAP2 AES key"[..], aes_key)] {
                    prk.expand(&[info], Bytes32)
                        .and_then(|okm| okm.fill(out))
                        .map_err(|_| ProtocolError("HKDF failed"))?;
                }
                Ok(secret)
            }
        }
    }

    /// Agree a shared secret with `peer` (a COSE P-256 key) from our
    /// fresh key; returns our public key (COSE) and the secret
    /// (CTAP 2.1 §6.5.6 `encapsulate`).
    pub fn encapsulate(self, peer: &Value) -> Result<(Value, Vec<u8>), ProtocolError> {
        let ours = EphemeralPrivateKey::generate(&ECDH_P256, &SystemRandom::new())
            .map_err(|_| ProtocolError("cannot make a key"))?;
        let public = ours.compute_public_key().map_err(|_| ProtocolError("cannot make a key"))?;
        let peer = UnparsedPublicKey::new(&ECDH_P256, point_from_cose(peer)?);
        let secret = agreement::agree_ephemeral(ours, peer, ProtocolError("key agreement failed"), |z| self.kdf(z))?;
        Ok((cose_from_point(public.as_ref())?, secret))
    }

    /// The authenticator's side of [`Self::encapsulate`]: the secret from
    /// its long-lived key and the platform's public key.
    pub fn decapsulate(self, ours: &agreement::PrivateKey, peer: &Value) -> Result<Vec<u8>, ProtocolError> {
        let peer = UnparsedPublicKey::new(&ECDH_P256, point_from_cose(peer)?);
        agreement::agree(ours, peer, ProtocolError("key agreement failed"), |z| self.kdf(z))
    }

    /// Encrypt whole blocks under the shared secret.
    pub fn encrypt(self, secret: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let (key, iv) = match self {
            Self::One => (secret, [0u8; 16]),
            Self::Two => {
                let mut iv = [0u8; 16];
                SystemRandom::new().fill(&mut iv).map_err(|_| ProtocolError("no randomness"))?;
                (secret.get(32..).ok_or(ProtocolError("short secret"))?, iv)
            }
        };
        let key = UnboundCipherKey::new(&AES_256, key).map_err(|_| ProtocolError("bad AES key"))?;
        let key = EncryptingKey::cbc(key).map_err(|_| ProtocolError("bad AES key"))?;
        let mut out = plaintext.to_vec();
        key.less_safe_encrypt(&mut out, EncryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| ProtocolError("not whole AES blocks"))?;
        Ok(match self {
            Self::One => out,
            Self::Two => [&iv[..], &out].concat(),
        })
    }

    /// Decrypt what [`Self::encrypt`] made.
    pub fn decrypt(self, secret: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let (key, iv, body) = match self {
            Self::One => (secret, [0u8; 16], ciphertext),
            Self::Two => {
                let key = secret.get(32..).ok_or(ProtocolError("short secret"))?;
                let (iv, body) = ciphertext.split_at_checked(16).ok_or(ProtocolError("no IV"))?;
                (key, <[u8; 16]>::try_from(iv).map_err(|_| ProtocolError("no IV"))?, body)
            }
        };
        if body.is_empty() || body.len() % 16 != 0 {
            return Err(ProtocolError("not whole AES blocks"));
        }
        let key = UnboundCipherKey::new(&AES_256, key).map_err(|_| ProtocolError("bad AES key"))?;
        let key = DecryptingKey::cbc(key).map_err(|_| ProtocolError("bad AES key"))?;
        let mut out = body.to_vec();
        let len = key
            .decrypt(&mut out, DecryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| ProtocolError("decryption failed"))?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// The MAC proving knowledge of `key` (a shared secret or a PIN token)
    /// over `message`.
    pub fn authenticate(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        let key = match self {
            // Protocol two MACs with the HMAC half of a shared secret, or
            // the whole (32-byte) token.
            Self::Two if key.len() == 64 => &key[..32],
            _ => key,
        };
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message);
        match self {
            Self::One => tag.as_ref()[..16].to_vec(),
            Self::Two => tag.as_ref().to_vec(),
        }
    }
}

/// `LEFT(SHA-256(pin), 16)`: what the authenticator stores and compares.
pub fn pin_hash(pin: &str) -> [u8; 16] {
    let mut left = [0u8; 16];
    left.copy_from_slice(&digest(&SHA256, pin.as_bytes()).as_ref()[..16]);
    left
}

/// A P-256 public key as the COSE_Key CTAP sends (kty EC2, alg
/// ECDH-ES+HKDF-256, crv P-256), from an uncompressed SEC1 point. Keys in
/// CTAP canonical order (CTAP 2.1 §8.1).
pub fn cose_from_point(point: &[u8]) -> Result<Value, ProtocolError> {
    match point {
        [0x04, xy @ ..] if xy.len() == 64 => Ok(Value::Map(vec![
            (1.into(), 2.into()),
            (3.into(), (-25).into()),
            ((-1).into(), 1.into()),
            ((-2).into(), Value::Bytes(xy[..32].to_vec())),
            ((-3).into(), Value::Bytes(xy[32..].to_vec())),
        ])),
        _ => Err(ProtocolError("not an uncompressed P-256 point")),
    }
}

/// The uncompressed SEC1 point of a COSE P-256 key.
pub fn point_from_cose(key: &Value) -> Result<Vec<u8>, ProtocolError> {
    let coordinate = |label: i64| {
        field(key, label).and_then(Value::as_bytes).filter(|c| c.len() == 32).ok_or(ProtocolError("not a P-256 key"))
    };
    Ok([&[0x04][..], coordinate(-2)?, coordinate(-3)?].concat())
}

/// The value under integer `label` in a CBOR map.
pub fn field(map: &Value, label: i64) -> Option<&Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_integer().is_some_and(|k| i128::from(k) == i128::from(label)))
        .map(|(_, v)| v)
}

/// HKDF output length: 32 bytes.
struct Bytes32;

impl KeyType for Bytes32 {
    fn len(&self) -> usize {
        32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_and_round_trip_in_both_protocols() {
        let card = agreement::PrivateKey::generate(&ECDH_P256).unwrap();
        let card_public = cose_from_point(card.compute_public_key().unwrap().as_ref()).unwrap();
        for protocol in [PinProtocol::One, PinProtocol::Two] {
            let (platform, secret) = protocol.encapsulate(&card_public).unwrap();
            assert_eq!(protocol.decapsulate(&card, &platform).unwrap(), secret);
            let hidden = protocol.encrypt(&secret, &pin_hash("4821")).unwrap();
            assert_ne!(&hidden[hidden.len() - 16..], &pin_hash("4821"));
            assert_eq!(protocol.decrypt(&secret, &hidden).unwrap(), pin_hash("4821"));
            let mac = protocol.authenticate(&secret, b"message");
            assert_eq!(mac.len(), if protocol == PinProtocol::One { 16 } else { 32 });
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Known answers computed independently (Python `cryptography`, from
    /// CTAP 2.1 §6.5.6 and §6.5.7) for fixed keys: card scalar 01..20,
    /// platform scalar 21..40, PIN "4821", client data hash 07 × 32.
    #[test]
    fn both_protocols_match_known_answers() {
        let card = agreement::PrivateKey::from_private_key(&ECDH_P256, &(1..=32).collect::<Vec<u8>>()).unwrap();
        let platform = cose_from_point(&hex(
            "041f140146bfb1b251f84f4ddbe0d4cdcfd77afd984a9520e35794021f8312bb9eec995a08b1fa7704df3dcc0b50a966\
             5263fb7711f95f9f8a449c5096e47c892b",
        ))
        .unwrap();
        let one = PinProtocol::One.decapsulate(&card, &platform).unwrap();
        assert_eq!(one, hex("1ec02cfb0421e2a0328e6737a6c08ebec1b8028a23488ba37e64aac2eac89db3"));
        assert_eq!(PinProtocol::One.encrypt(&one, &pin_hash("4821")).unwrap(), hex("f55c11a56fd5cc0f5676ce97fe63db7b"));
        assert_eq!(PinProtocol::One.authenticate(&one, &[7; 32]), hex("0659299edc61f531d320e059089330a1"));
        let two = PinProtocol::Two.decapsulate(&card, &platform).unwrap();
        assert_eq!(
            two,
            hex("8da12c0f9997c5f11c4110fc28598f91acc9025de91db49aa2aba7a311bf4139\
                 743562500c3df309c9b074d46a7cf8cecef2368ae7966e7078f73796d5e3e11c")
        );
        let sealed = hex("6465666768696a6b6c6d6e6f707172736efc633b4f4e92d37b550cc34cdc7bf0");
        assert_eq!(PinProtocol::Two.decrypt(&two, &sealed).unwrap(), pin_hash("4821"));
        assert_eq!(
            PinProtocol::Two.authenticate(&two, &[7; 32]),
            hex("7c36802814c05aa942b70526756656cf02b8868f5e9bc1b3b4344b30817f39e5")
        );
    }

    #[test]
    fn malformed_keys_and_ciphertexts_are_errors() {
        assert!(cose_from_point(&[0x04, 1, 2]).is_err());
        assert!(point_from_cose(&Value::Map(vec![])).is_err());
        assert!(point_from_cose(&Value::Text("key".into())).is_err());
        let off_curve =
            Value::Map(vec![((-2).into(), Value::Bytes(vec![1; 32])), ((-3).into(), Value::Bytes(vec![2; 32]))]);
        assert!(PinProtocol::One.encapsulate(&off_curve).is_err());
        let secret = vec![7u8; 64];
        assert!(PinProtocol::One.decrypt(&secret, &[1, 2, 3]).is_err());
        assert!(PinProtocol::Two.decrypt(&secret, &[0; 16]).is_err());
        assert!(PinProtocol::Two.decrypt(&secret[..16], &[0; 32]).is_err());
        assert!(PinProtocol::from_number(3).is_none());
    }
}

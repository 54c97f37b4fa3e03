//! SHA-256 digests in the one form warden writes everywhere: `sha256:<64 lower-case hex>`
//! (the audit log's, OCI's, the policy's and the installer's state file's form).

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// The `sha256:` prefix.
pub const PREFIX: &str = "sha256:";

/// A SHA-256 digest. `Display` and serde use `sha256:<64 lower-case hex>`; [`FromStr`]
/// accepts that form in any case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a text is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// It does not start with `sha256:`.
    #[error("{text:?}: expected sha256:<64 hex digits>")]
    NoPrefix { text: String },
    /// What follows is not 64 hex digits.
    #[error("{text:?}: expected sha256:<64 hex digits>")]
    NotHex { text: String },
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The digest of everything `reader` yields, read in 1 MiB chunks (for files of
    /// hundreds of MB).
    pub fn of_reader(mut reader: impl Read) -> io::Result<Digest> {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buffer[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Digest(hasher.finalize().into()))
    }

    /// A finished SHA-256 hash.
    pub fn from_bytes(hash: [u8; 32]) -> Digest {
        Digest(hash)
    }

    /// The bare 64 hex digits, any case (a `.sha256` file's or `sha256sum`'s form).
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        let not_hex = || DigestError::NotHex {
            text: hex.to_owned(),
        };
        if hex.len() != 64 {
            return Err(not_hex());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex, &mut bytes).map_err(|_| not_hex())?;
        Ok(Digest(bytes))
    }

    /// The hash's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lower-case hex digits without `sha256:` (cache and blob file names).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> String {
        let mut hex = self.hex();
        hex.truncate(12);
        hex
    }
}

/// The first 12 hex digits of a digest held as text (`sha256:` or not), for messages;
/// a text shorter than that is returned whole.
pub fn short(text: &str) -> &str {
    let hex = text.strip_prefix(PREFIX).unwrap_or(text);
    hex.get(..12).unwrap_or(hex)
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// `sha256:` followed by 64 hex digits, any case; nothing around it.
    fn from_str(text: &str) -> Result<Digest, DigestError> {
        let hex = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| DigestError::NoPrefix {
                text: text.to_owned(),
            })?;
        Digest::from_hex(hex).map_err(|_| DigestError::NotHex {
            text: text.to_owned(),
        })
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> String {
        digest.to_string()
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a digest sha256:<64 hex digits>")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Digest, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn of_bytes_and_of_reader_agree_and_display_the_canonical_form() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        assert_eq!(Digest::of_reader(&b""[..]).unwrap(), Digest::of(b""));
        // Across the 1 MiB chunk boundary.
        let big = vec![7u8; (1 << 20) + 3];
        assert_eq!(Digest::of_reader(&big[..]).unwrap(), Digest::of(&big));
        assert_eq!(Digest::of(b"").hex(), &EMPTY[PREFIX.len()..]);
        assert_eq!(Digest::of(b"").short(), "e3b0c44298fc");
        assert_eq!(short(EMPTY), "e3b0c44298fc");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn parse_round_trips_and_normalises_case() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d, Digest::of(b""));
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        let upper = format!("sha256:{}", EMPTY[PREFIX.len()..].to_uppercase());
        assert_eq!(upper.parse::<Digest>().unwrap().to_string(), EMPTY);
        assert_eq!(Digest::from_hex(&EMPTY[PREFIX.len()..]).unwrap(), d);
        assert_eq!(Digest::from_bytes(*d.as_bytes()), d);
    }

    #[test]
    fn parse_rejects_what_is_not_a_sha256_digest() {
        let hex = &EMPTY[PREFIX.len()..];
        for bad in [
            "sha256:abc".to_owned(),
            format!("sha256:{}", "g".repeat(64)),
            format!("sha256:{hex}0"),
            format!(" {EMPTY}"),
            format!("{EMPTY}\n"),
            format!("SHA256:{hex}"),
            hex.to_owned(),
            "md5:d41d8cd98f00b204e9800998ecf8427e".to_owned(),
            format!("sha256:{}é", &hex[..62]),
            String::new(),
        ] {
            let err = bad.parse::<Digest>().unwrap_err();
            assert!(
                err.to_string().contains("expected sha256:<64 hex digits>"),
                "{bad:?}: {err}"
            );
        }
        assert!(matches!(
            hex.parse::<Digest>(),
            Err(DigestError::NoPrefix { .. })
        ));
        assert!(matches!(
            "sha256:ab".parse::<Digest>(),
            Err(DigestError::NotHex { .. })
        ));
        assert!(Digest::from_hex("abc").is_err());
    }

    #[test]
    fn serde_uses_the_string_form() {
        let d = Digest::of(b"");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        let err = serde_json::from_str::<Digest>("\"sha256:00\"").unwrap_err();
        assert!(err.to_string().contains("sha256:<64 hex digits>"), "{err}");
        assert!(serde_json::from_str::<Digest>("7").is_err());
    }
}

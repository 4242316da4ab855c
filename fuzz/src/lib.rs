//! Shared code of Wardkey's fuzz targets (see `README.md`).
//!
//! - [`server`]: one in-process Wardkey server per fuzzing process, built
//!   as the integration tests build theirs (SQLite in memory, the in-process
//!   cache) with fixed keys and a fixed clock, so that committed seeds that
//!   carry signatures stay valid.
//! - [`jose`]: compact JWS signing with the fixture keys.
//! - [`webauthn`]: a software authenticator's registration and assertion
//!   responses, as a browser sends them.
//! - [`ctap`]: the framing of the CTAP2 targets' inputs.
//! - [`seeds`]: the seed generator: every target writes its own seed corpus
//!   when `WARDKEY_FUZZ_WRITE_SEEDS` names a directory.

pub mod ctap;
pub mod jose;
pub mod seeds;
pub mod server;
pub mod webauthn;

/// Split `data` into length-prefixed records: two bytes big-endian length,
/// then that many bytes (fewer at the end of the input).
pub fn records(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        data = &rest[take..];
    }
    out
}

/// The inverse of [`records`].
pub fn frame(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let len = u16::try_from(r.len()).expect("a record fits in 64 KiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(r);
    }
    out
}

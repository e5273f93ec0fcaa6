//! The password hash verifier (crates/roster/src/accounts/hashing.rs): Django `pbkdf2_sha256`
//! and Argon2 PHC strings. Input: the password, a newline, the stored hash; or, with a leading
//! `#`, a password and salt to hash with the reference crates, which must verify.
#![no_main]

use argon2::password_hash::{PasswordHasher, SaltString};
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use roster::accounts::hashing::{is_supported_hash, verify};
use roster::accounts::Verification;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(rest) = text.strip_prefix('#') {
        let (raw, salt) = rest.split_once('\n').unwrap_or((rest, "saltsalt"));
        reference(raw, salt);
        return;
    }
    let (raw, stored) = text.split_once('\n').unwrap_or(("", text));
    let supported = is_supported_hash(stored);
    if !cheap(stored) {
        return;
    }
    let verdict = verify(raw, stored);
    // A hash the import accepts must be one log in can check, and the other way round.
    assert_eq!(verdict != Verification::Malformed, supported, "{stored:?}: {verdict:?}");
});

/// Hashes of `raw` made by the argon2 and pbkdf2 crates verify, and a different password not.
fn reference(raw: &str, salt: &str) {
    // Argon2 takes salts of 8 bytes or more; the PHC string, at most 48.
    let argon2_salt = SaltString::encode_b64(salt.as_bytes()).ok().filter(|_| salt.len() >= 8);
    if let Some(salt) = argon2_salt {
        let params = argon2::Params::new(8, 1, 1, None).expect("params");
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let hash = argon.hash_password(raw.as_bytes(), &salt).expect("hash").to_string();
        assert_eq!(verify(raw, &hash), Verification::Valid { needs_rehash: true }, "{hash}");
        assert_eq!(verify(&format!("{raw}x"), &hash), Verification::Invalid, "{hash}");
    }
    if !salt.is_empty() && !salt.contains('$') {
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(raw.as_bytes(), salt.as_bytes(), 1, &mut out);
        let hash = format!("pbkdf2_sha256$1${salt}${}", base64::engine::general_purpose::STANDARD.encode(out));
        assert_eq!(verify(raw, &hash), Verification::Valid { needs_rehash: true }, "{hash}");
        assert_eq!(verify(&format!("{raw}x"), &hash), Verification::Invalid, "{hash}");
    }
}

/// Whether verifying costs little: the verifier allows up to 10,000,000 PBKDF2 iterations and
/// 1 GiB of Argon2 memory (real hashes cost that much on purpose), too slow for a fuzzer.
fn cheap(stored: &str) -> bool {
    let number = |key: &str| -> Option<u64> {
        let at = stored.find(key)? + key.len();
        let digits: String = stored[at..].chars().take_while(char::is_ascii_digit).collect();
        Some(digits.parse().unwrap_or(u64::MAX))
    };
    if let Some(rest) = stored.strip_prefix("pbkdf2_sha256$") {
        let iterations = rest.split('$').next().unwrap_or("");
        return iterations.parse::<u64>().map_or(true, |n| n <= 2_000);
    }
    // A missing `m` or `t` is the argon2 crate's default: 19 MiB, 2 passes.
    let m = number("m=").unwrap_or(19_456);
    let t = number("t=").unwrap_or(2);
    m <= 256 && t <= 4
}

//! Password hashing and verification. New hashes are Argon2id PHC strings
//! (`$argon2id$v=19$m=19456,t=2,p=1$…`: OWASP's recommended minimum, which is also the `argon2`
//! crate's default). Verification also accepts hashes imported from Django:
//! `pbkdf2_sha256$<iterations>$<salt>$<base64>` (Django's default hasher) and Argon2 PHC
//! strings with other parameters; both report `needs_rehash` so the caller re-hashes at log in.
//!
//! The sync functions are CPU-heavy by design: call them only through the async wrappers
//! ([`hash_password`], [`verify_password`], [`dummy_verify`]), which use Tokio's blocking pool so
//! Argon2 never runs on the async runtime. Depends on no HTTP, database or logging; nothing here
//! logs, displays or returns a raw password.

use std::sync::{Mutex, OnceLock, PoisonError};

use tokio::sync::Semaphore;

use argon2::password_hash::ParamsString;
use argon2::password_hash::{self, Output, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine as _;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::password::NewPassword;

/// Argon2id memory cost in KiB (19 MiB).
pub const ARGON2_M_COST: u32 = 19_456;
/// Argon2id passes.
pub const ARGON2_T_COST: u32 = 2;
/// Argon2id lanes.
pub const ARGON2_P_COST: u32 = 1;

/// Django's `PBKDF2PasswordHasher.algorithm`.
const PBKDF2_PREFIX: &str = "pbkdf2_sha256";
/// Django's unusable-password prefix (`UNUSABLE_PASSWORD_PREFIX`).
const UNUSABLE_PREFIX: char = '!';
/// Bounds on work a stored hash can ask for, so a corrupted or hostile row cannot pin a CPU or
/// exhaust memory. Django 5.2 uses 1,000,000 PBKDF2 iterations and Argon2 m=102400,t=2,p=8.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
const MAX_ARGON2_M_COST: u32 = 1_048_576;
const MAX_ARGON2_T_COST: u32 = 64;
const MAX_ARGON2_P_COST: u32 = 64;

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The password matches. If `needs_rehash`, store a fresh [`hash_password`] of it: the
    /// stored hash is a Django PBKDF2 hash or Argon2 with parameters other than the current ones.
    Valid { needs_rehash: bool },
    /// The password does not match (also for Django's unusable `!…` passwords).
    Invalid,
    /// The stored string is not a hash this module understands (an operator problem).
    Malformed,
}

/// Hashing failed; never includes the password.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The Argon2 implementation refused (should not happen with the fixed parameters).
    #[error("argon2 hashing failed: {0}")]
    Argon2(password_hash::Error),
    /// The blocking task panicked or was cancelled.
    #[error("the password hashing task did not complete")]
    Task,
}

fn current_params() -> Result<Params, password_hash::Error> {
    Ok(Params::new(ARGON2_M_COST, ARGON2_T_COST, ARGON2_P_COST, None)?)
}

/// Hash `raw` with Argon2id and a fresh random salt. Blocking: ~tens of ms of CPU and 19 MiB.
pub fn hash_blocking(raw: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let params = current_params().map_err(HashError::Argon2)?;
    let hash = argon2_phc(Algorithm::Argon2id, Version::V0x13, &params, raw.as_bytes(), salt.as_salt())
        .map_err(HashError::Argon2)?;
    Ok(hash.to_string())
}

/// Argon2 working memory (`m_cost` KiB per hash) kept for reuse. Letting the argon2 crate
/// allocate and free 19 MiB per hash made glibc keep those buffers in per-thread arenas: RSS
/// reached ~1 GB after 80 sign-ups. At most [`hash_slots`] buffers are kept, one per hash that
/// may run at once.
static WORK_MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// How many Argon2 computations may run at once (the async wrappers wait for a slot): one per
/// core, so a log-in storm queues instead of running hundreds of 19 MiB hashes side by side.
fn hash_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| Semaphore::new(hash_slots_count()))
}

/// Runs `f` with `count` blocks of working memory from the pool (or fresh, if none fits).
fn with_work_memory<R>(count: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
    let reused = WORK_MEMORY.lock().unwrap_or_else(PoisonError::into_inner).pop();
    let mut blocks = match reused {
        Some(b) if b.len() == count => b,
        _ => vec![Block::default(); count],
    };
    let result = f(&mut blocks);
    let mut pool = WORK_MEMORY.lock().unwrap_or_else(PoisonError::into_inner);
    let keep = current_params().is_ok_and(|p| p.block_count() == count) && pool.len() < hash_slots_count();
    if keep {
        pool.push(blocks);
    }
    result
}

/// One hash slot per core.
fn hash_slots_count() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// The PHC hash of `raw` with `salt`, computed in pooled working memory (what
/// `PasswordHasher::hash_password` computes, without its per-call allocation).
fn argon2_phc<'a>(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    raw: &[u8],
    salt: Salt<'a>,
) -> Result<PasswordHash<'a>, password_hash::Error> {
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut salt_buf = [0u8; Salt::MAX_LENGTH];
    let salt_bytes = salt.decode_b64(&mut salt_buf)?;
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = with_work_memory(params.block_count(), |blocks| {
        Output::init_with(len, |out| {
            argon2.hash_password_into_with_memory(raw, salt_bytes, out, blocks).map_err(password_hash::Error::from)
        })
    })?;
    Ok(PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(params)?,
        salt: Some(salt),
        hash: Some(output),
    })
}

/// Check `raw` against a stored hash. Blocking. Never panics, whatever `stored` holds.
pub fn verify(raw: &str, stored: &str) -> Verification {
    verify_inner(raw, stored).0
}

/// The verification and whether real key-derivation work was done (so the async wrapper can
/// spend equivalent time on the cases that return early).
fn verify_inner(raw: &str, stored: &str) -> (Verification, bool) {
    if stored.starts_with(UNUSABLE_PREFIX) {
        (Verification::Invalid, false)
    } else if stored.starts_with('$') {
        verify_argon2(raw, stored)
    } else if let Some(rest) = stored.strip_prefix(PBKDF2_PREFIX).and_then(|r| r.strip_prefix('$')) {
        verify_pbkdf2(raw, rest)
    } else {
        (Verification::Malformed, false)
    }
}

/// A parsed Argon2 PHC string whose shape and cost this module accepts.
struct Argon2Hash<'a> {
    hash: PasswordHash<'a>,
    algorithm: Algorithm,
    version: Version,
    params: Params,
}

/// Parses `stored` and checks everything verification will need (so that [`is_supported_hash`],
/// which the import relies on, says yes exactly when [`verify`] can answer).
fn parse_argon2(stored: &str) -> Option<Argon2Hash<'_>> {
    let hash = PasswordHash::new(stored).ok()?;
    let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
    let version = match hash.version {
        None => Version::V0x13,
        Some(v) => Version::try_from(v).ok()?,
    };
    // Bounded before `Params` sees them: its own check computes `8 * p`, which overflows for a
    // huge `p` (a panic where overflow is checked).
    let bounded = hash.params.iter().all(|(name, value)| {
        let max = match name.as_str() {
            "m" => MAX_ARGON2_M_COST,
            "t" => MAX_ARGON2_T_COST,
            "p" => MAX_ARGON2_P_COST,
            _ => return true,
        };
        value.decimal().is_ok_and(|v| v <= max)
    });
    if !bounded {
        return None;
    }
    let params = Params::try_from(&hash).ok()?;
    // The salt must decode to what Argon2 takes (base64 of 8 bytes or more).
    let mut salt_buf = [0u8; Salt::MAX_LENGTH];
    let salt_len = hash.salt?.decode_b64(&mut salt_buf).ok()?.len();
    (salt_len >= argon2::MIN_SALT_LEN && hash.hash.is_some()).then_some(Argon2Hash { hash, algorithm, version, params })
}

fn verify_argon2(raw: &str, stored: &str) -> (Verification, bool) {
    let Some(Argon2Hash { hash, algorithm, version, params }) = parse_argon2(stored) else {
        return (Verification::Malformed, false);
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return (Verification::Malformed, false);
    };
    // Recompute with the stored hash's algorithm, version, parameters and salt; `Output`
    // compares in constant time.
    let verdict = match argon2_phc(algorithm, version, &params, raw.as_bytes(), salt) {
        Ok(computed) if computed.hash == Some(expected) => Ok(()),
        Ok(_) => Err(password_hash::Error::Password),
        Err(e) => Err(e),
    };
    match verdict {
        Ok(()) => {
            let current = algorithm == Algorithm::Argon2id
                && version == Version::V0x13
                && params.m_cost() == ARGON2_M_COST
                && params.t_cost() == ARGON2_T_COST
                && params.p_cost() == ARGON2_P_COST
                && params.output_len() == Some(Params::DEFAULT_OUTPUT_LEN);
            (Verification::Valid { needs_rehash: !current }, true)
        }
        Err(password_hash::Error::Password) => (Verification::Invalid, true),
        Err(_) => (Verification::Malformed, false),
    }
}

/// Django's `PBKDF2PasswordHasher.verify`: re-encode with the stored salt and iterations and
/// compare the encodings in constant time. `rest` is `<iterations>$<salt>$<base64 hash>`.
fn verify_pbkdf2(raw: &str, rest: &str) -> (Verification, bool) {
    let mut fields = rest.split('$');
    let (Some(iterations), Some(salt), Some(expected_b64), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return (Verification::Malformed, false);
    };
    let Some(iterations) = parse_iterations(iterations) else {
        return (Verification::Malformed, false);
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    if salt.is_empty() || b64.decode(expected_b64).map(|d| d.len()) != Ok(32) {
        return (Verification::Malformed, false);
    }
    let mut derived = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(raw.as_bytes(), salt.as_bytes(), iterations, &mut derived);
    let computed_b64 = b64.encode(derived);
    if bool::from(computed_b64.as_bytes().ct_eq(expected_b64.as_bytes())) {
        (Verification::Valid { needs_rehash: true }, true)
    } else {
        (Verification::Invalid, true)
    }
}

/// Iterations as Django writes them (`%d`): canonical decimal, positive, bounded.
fn parse_iterations(s: &str) -> Option<u32> {
    let n: u32 = s.parse().ok()?;
    (n > 0 && n <= MAX_PBKDF2_ITERATIONS && n.to_string() == s).then_some(n)
}

/// Whether `stored` is a hash [`verify`] can check (Argon2 PHC or Django `pbkdf2_sha256`) or an
/// unusable `!` password, judged by shape alone without doing key derivation.
pub fn is_supported_hash(stored: &str) -> bool {
    if stored.starts_with(UNUSABLE_PREFIX) {
        return true;
    }
    if stored.starts_with('$') {
        return parse_argon2(stored).is_some();
    }
    let Some(rest) = stored.strip_prefix(PBKDF2_PREFIX).and_then(|r| r.strip_prefix('$')) else {
        return false;
    };
    let fields: Vec<&str> = rest.split('$').collect();
    matches!(fields.as_slice(), [iterations, salt, hash]
        if parse_iterations(iterations).is_some()
            && !salt.is_empty()
            && base64::engine::general_purpose::STANDARD.decode(hash).map(|d| d.len()) == Ok(32))
}

/// A fixed Argon2id hash with the current parameters, made once, for [`dummy_verify`].
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            let salt = SaltString::encode_b64(b"roster-dummy-salt").ok()?;
            let params = current_params().ok()?;
            let hash = argon2_phc(Algorithm::Argon2id, Version::V0x13, &params, b"not a real password", salt.as_salt())
                .ok()?;
            Some(hash.to_string())
        })
        .as_deref()
}

fn dummy_verify_blocking() {
    if let Some(hash) = dummy_hash() {
        let _ = verify(" ", hash);
    }
}

/// Hash a validated new password with Argon2id on the blocking pool.
pub async fn hash_password(password: NewPassword) -> Result<String, HashError> {
    on_hash_slot(move || hash_blocking(password.expose_secret())).await.ok_or(HashError::Task)?
}

/// Re-hash, with current Argon2id parameters, a password that [`verify_password`] just found
/// `Valid { needs_rehash: true }`. It takes the raw string because an old password need not
/// pass today's validators (so no [`NewPassword`] exists for it); use it for nothing else.
pub async fn rehash_password(raw: String) -> Result<String, HashError> {
    on_hash_slot(move || hash_blocking(&raw)).await.ok_or(HashError::Task)?
}

/// Check a log-in attempt against a stored hash on the blocking pool. When the stored hash is
/// unusable or malformed, it still spends one Argon2 verification, so the response time does
/// not tell those accounts apart. Fails closed: if the task does not complete, `Invalid`.
pub async fn verify_password(raw: String, stored: String) -> Verification {
    on_hash_slot(move || {
        let (outcome, worked) = verify_inner(&raw, &stored);
        if !worked {
            dummy_verify_blocking();
        }
        outcome
    })
    .await
    .unwrap_or(Verification::Invalid)
}

/// Spend the time of one Argon2id verification, on the blocking pool. Call it when the
/// username does not exist, so timing does not reveal which accounts exist.
pub async fn dummy_verify() {
    let _ = on_hash_slot(dummy_verify_blocking).await;
}

/// Runs Argon2 work `f` on the blocking pool once one of the [`hash_slots`] is free. `None` if
/// the task failed.
async fn on_hash_slot<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    let _slot = hash_slots().acquire().await.ok()?;
    tokio::task::spawn_blocking(f).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHasher;

    #[test]
    fn pooled_memory_hash_equals_the_crates_own() {
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        let params = current_params().expect("params");
        let ours = argon2_phc(Algorithm::Argon2id, Version::V0x13, &params, b"pw-1", salt.as_salt()).expect("ours");
        let theirs =
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password(b"pw-1", &salt).expect("theirs");
        assert_eq!(ours.to_string(), theirs.to_string());
        // Twice, so the second run reuses pooled memory left dirty by the first.
        let again =
            argon2_phc(Algorithm::Argon2id, Version::V0x13, &current_params().expect("p"), b"pw-1", salt.as_salt())
                .expect("again");
        assert_eq!(again.to_string(), theirs.to_string());
        assert!(WORK_MEMORY.lock().expect("pool").len() <= hash_slots_count());
    }

    const PASSWORD: &str = "correct horse battery staple";

    // Made by Django 5.2.19 itself, in a venv (`pip install django==5.2.* argon2-cffi`):
    //   settings.configure(PASSWORD_HASHERS=["__main__.Fast1000", ".../Argon2PasswordHasher"])
    //   class Fast1000(PBKDF2PasswordHasher): iterations = 1000
    //   make_password(pw, salt="RosterSalt123456", hasher="pbkdf2_sha256")
    // and `check_password(pw, h)` was True for each.
    const DJANGO_PBKDF2: &str = "pbkdf2_sha256$1000$RosterSalt123456$tvTnA9ahDQctsUfcBSMh6CxfPDHnsIdp/a7ex8jzDv0=";
    const DJANGO_PBKDF2_UNICODE_PW: &str = "pässwörd €";
    const DJANGO_PBKDF2_UNICODE: &str =
        "pbkdf2_sha256$1000$RosterSalt123456$KiUdi5NGw5M9QsdnMu4H7Q/PwetcPfXrVXajGPm9VAM=";
    // Same, `make_password(pw, salt="RosterSalt123456", hasher="argon2")` (Django's own Argon2
    // format is "argon2" + this PHC string; django_import strips the prefix).
    const DJANGO_ARGON2_PHC: &str =
        "$argon2id$v=19$m=102400,t=2,p=8$Um9zdGVyU2FsdDEyMzQ1Ng$pYvs6bWfI64b1zPjlUtCAru+sU1D1txTLnYpP92XqnQ";

    fn new_password(raw: &str) -> NewPassword {
        match NewPassword::parse(raw, "") {
            Ok(p) => p,
            Err(e) => panic!("test password refused: {e:?}"),
        }
    }

    #[tokio::test]
    async fn round_trip() {
        let hash = hash_password(new_password(PASSWORD)).await;
        let hash = match hash {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        };
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(!hash.contains(PASSWORD));
        assert_eq!(verify_password(PASSWORD.into(), hash.clone()).await, Verification::Valid { needs_rehash: false });
        assert_eq!(verify_password("wrong password".into(), hash.clone()).await, Verification::Invalid);
        // Salted: the same password hashes differently each time.
        assert_ne!(hash_password(new_password(PASSWORD)).await.ok(), Some(hash));
    }

    #[tokio::test]
    async fn upgrade_at_log_in() {
        // An imported Django user whose old password would fail today's validators.
        assert!(NewPassword::parse("12345678", "").is_err());
        // base64(hashlib.pbkdf2_hmac("sha256", b"12345678", b"salt", 1000)), Django's layout.
        let old = "pbkdf2_sha256$1000$salt$i5wpR15flW4OAXGGvYYK7l1MwUSppuwVG8sggeQtUJU=";
        assert_eq!(verify_password("12345678".into(), old.into()).await, Verification::Valid { needs_rehash: true });
        let upgraded = rehash_password("12345678".into()).await.unwrap_or_default();
        assert_eq!(verify_password("12345678".into(), upgraded).await, Verification::Valid { needs_rehash: false });
    }

    #[test]
    fn verifies_django_pbkdf2_and_asks_for_rehash() {
        assert_eq!(verify(PASSWORD, DJANGO_PBKDF2), Verification::Valid { needs_rehash: true });
        assert_eq!(verify(DJANGO_PBKDF2_UNICODE_PW, DJANGO_PBKDF2_UNICODE), Verification::Valid { needs_rehash: true });
        assert_eq!(verify("Correct horse battery staple", DJANGO_PBKDF2), Verification::Invalid);
        assert_eq!(verify("", DJANGO_PBKDF2), Verification::Invalid);
    }

    #[test]
    fn verifies_django_argon2_and_asks_for_rehash() {
        assert_eq!(verify(PASSWORD, DJANGO_ARGON2_PHC), Verification::Valid { needs_rehash: true });
        assert_eq!(verify("nope", DJANGO_ARGON2_PHC), Verification::Invalid);
    }

    #[test]
    fn weaker_argon2_needs_rehash() {
        let weak = Params::new(8_192, 1, 1, None).map(|p| Argon2::new(Algorithm::Argon2id, Version::V0x13, p));
        let salt = SaltString::encode_b64(b"0123456789abcdef");
        let hash = match (weak, salt) {
            (Ok(a), Ok(s)) => a.hash_password(PASSWORD.as_bytes(), &s).map(|h| h.to_string()),
            _ => panic!("test setup"),
        };
        let hash = hash.unwrap_or_default();
        assert_eq!(verify(PASSWORD, &hash), Verification::Valid { needs_rehash: true });
        // argon2i is verified too, and upgraded.
        let i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::default());
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap_or_else(|_| panic!("salt"));
        let hash_i = i.hash_password(PASSWORD.as_bytes(), &salt).map(|h| h.to_string()).unwrap_or_default();
        assert_eq!(verify(PASSWORD, &hash_i), Verification::Valid { needs_rehash: true });
    }

    #[test]
    fn wrong_and_tampered() {
        let tampered = DJANGO_PBKDF2.replace("1000$", "1001$");
        assert_eq!(verify(PASSWORD, &tampered), Verification::Invalid);
        assert_eq!(verify(PASSWORD, "!unusableXYZ"), Verification::Invalid);
        assert_eq!(verify(PASSWORD, "!"), Verification::Invalid);
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "$",
            "$$$$",
            "plain text",
            "md5$salt$hash",
            "pbkdf2_sha256",
            "pbkdf2_sha256$",
            "pbkdf2_sha256$1000$salt",
            "pbkdf2_sha256$abc$salt$tvTnA9ahDQctsUfcBSMh6CxfPDHnsIdp/a7ex8jzDv0=",
            "pbkdf2_sha256$0$salt$tvTnA9ahDQctsUfcBSMh6CxfPDHnsIdp/a7ex8jzDv0=",
            "pbkdf2_sha256$01000$RosterSalt123456$tvTnA9ahDQctsUfcBSMh6CxfPDHnsIdp/a7ex8jzDv0=",
            "pbkdf2_sha256$99999999999$salt$tvTnA9ahDQctsUfcBSMh6CxfPDHnsIdp/a7ex8jzDv0=",
            "pbkdf2_sha256$1000$$tvTnA9ahDQctsUfcBSMh6CxfPDHnsIdp/a7ex8jzDv0=",
            "pbkdf2_sha256$1000$salt$not base64!",
            "pbkdf2_sha256$1000$salt$c2hvcnQ=",
            "pbkdf2_sha256$1000$a$b$c",
            "pbkdf2_sha1$1000$salt$tvTnA9ahDQctsUfcBSMh6CxfPDHnsIdp/a7ex8jzDv0=",
            "argon2$argon2id$v=19$m=102400,t=2,p=8$Um9zdGVyU2FsdDEyMzQ1Ng$pYvs6bWfI64b1zPjlUtCAru+sU1D1txTLnYpP92XqnQ",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ",
            "$argon2id$v=19$m=4294967295,t=2,p=1$c2FsdHNhbHQ$pYvs6bWfI64b1zPjlUtCAru+sU1D1txTLnYpP92XqnQ",
            "$argon2id$v=19$m=19456,t=4294967295,p=1$c2FsdHNhbHQ$pYvs6bWfI64b1zPjlUtCAru+sU1D1txTLnYpP92XqnQ",
            "$argon2id$v=99$m=19456,t=2,p=1$c2FsdHNhbHQ$pYvs6bWfI64b1zPjlUtCAru+sU1D1txTLnYpP92XqnQ",
            "$bcrypt$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$pYvs6bWfI64b1zPjlUtCAru+sU1D1txTLnYpP92XqnQ",
            "$scrypt$ln=16,r=8,p=1$c2FsdHNhbHQ$pYvs6bWfI64b1zPjlUtCAru+sU1D1txTLnYpP92XqnQ",
        ] {
            assert_eq!(verify(PASSWORD, bad), Verification::Malformed, "{bad:?}");
            assert!(!is_supported_hash(bad), "{bad:?}");
        }
        assert!(is_supported_hash(DJANGO_PBKDF2));
        assert!(is_supported_hash(DJANGO_ARGON2_PHC));
        assert!(is_supported_hash("!abc"));
    }

    /// Found by the `django_hash` fuzz target: an Argon2 hash whose salt does not decode (a
    /// length of 4n+1 base64 characters) or decodes to fewer than 8 bytes passed
    /// `is_supported_hash` (so the import took it) but could never verify: the user could never
    /// log in. Both now agree: malformed.
    #[test]
    fn argon2_salts_that_cannot_verify_are_refused_by_the_import_too() {
        let hash = "pYvs6bWfI64b1zPjlUtCAru+sU1D1txTLnYpP92XqnQ";
        for salt in ["c2FsdHNhbHQx1", "c2Fs", "c2FsdA", "YWJjZGVmZw"] {
            let stored = format!("$argon2id$v=19$m=64,t=1,p=1${salt}${hash}");
            assert_eq!(verify(PASSWORD, &stored), Verification::Malformed, "{stored}");
            assert!(!is_supported_hash(&stored), "{stored}");
        }
        // Eight bytes is the least Argon2 takes.
        let eight = format!("$argon2id$v=19$m=64,t=1,p=1$YWJjZGVmZ2g${hash}");
        assert_eq!(verify(PASSWORD, &eight), Verification::Invalid);
        assert!(is_supported_hash(&eight));
    }

    /// Found by the `django_hash` fuzz target: a huge `p` overflowed in the argon2 crate's own
    /// parameter check (`8 * p`), a panic in builds with overflow checks.
    #[test]
    fn a_huge_argon2_parallelism_is_malformed_not_a_panic() {
        for p in ["536870912", "4294967295", "99999999999"] {
            let stored =
                format!("$argon2id$v=19$m=19456,t=2,p={p}$c2FsdHNhbHQ$pYvs6bWfI64b1zPjlUtCAru+sU1D1txTLnYpP92XqnQ");
            assert_eq!(verify(PASSWORD, &stored), Verification::Malformed, "{stored}");
            assert!(!is_supported_hash(&stored), "{stored}");
        }
    }

    #[tokio::test]
    async fn dummy_and_malformed_paths_complete() {
        dummy_verify().await;
        assert_eq!(verify_password(PASSWORD.into(), "garbage".into()).await, Verification::Malformed);
        assert_eq!(verify_password(PASSWORD.into(), "!x".into()).await, Verification::Invalid);
    }

    #[test]
    fn hash_error_shows_no_secret() {
        assert_eq!(HashError::Task.to_string(), "the password hashing task did not complete");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn verify_never_panics(
            raw in "\\PC{0,12}",
            stored in proptest::prop_oneof![
                "\\PC{0,80}",
                "pbkdf2_sha256\\$[0-9]{0,3}\\$[a-z$]{0,6}\\$[A-Za-z0-9+/=$]{0,48}",
                "\\$argon2(id|i|d)?\\$v=[0-9]{0,3}\\$m=[0-9]{0,3},t=[0-9]{0,2},p=[0-9]{0,2}\\$[A-Za-z0-9+/$]{0,30}",
            ],
        ) {
            let _ = verify(&raw, &stored);
            let _ = is_supported_hash(&stored);
        }
    }
}

//! The Django `auth_user` CSV import (crates/roster/src/accounts/django_import.rs) on any file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster::accounts::hashing::is_supported_hash;
use roster::accounts::{import_csv, Username};

fuzz_target!(|data: &[u8]| {
    let Ok(imported) = import_csv(data) else { return };
    // Physical lines, ended by "\n", "\r\n" or a lone "\r" (all three end a CSV record).
    let mut lines = 1u64;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' || (b == b'\r' && data.get(i + 1) != Some(&b'\n')) {
            lines += 1;
        }
    }
    let mut previous = 0;
    for error in &imported.errors {
        assert!(error.line >= 2, "a row before the header's line: {error}");
        assert!(error.line <= lines, "line {} of {lines}: {error}", error.line);
        assert!(error.line >= previous, "lines out of order");
        previous = error.line;
    }
    for user in &imported.users {
        assert!(is_supported_hash(&user.password_hash));
        let name = user.username.as_str();
        assert_eq!(Username::parse(name).as_ref().map(Username::as_str), Ok(name));
    }
});

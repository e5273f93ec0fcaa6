//! Reading the server's own source, for tests that hold the docs to it: the Rust files of the
//! crates the binary is made of, the arguments of a macro's calls, and the string literals in
//! them.

use std::path::{Path, PathBuf};

/// The crates whose code runs in the `roster` binary.
const CRATES: [&str; 3] = ["crates/roster/src", "crates/presence/src", "crates/presence-redis/src"];

/// Every `.rs` file of those crates with its text.
pub fn rust_files() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = CRATES.iter().map(|c| root.join(c)).collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read");
                out.push((path, text));
            }
        }
    }
    assert!(out.len() > 20, "found the sources");
    out
}

/// The argument text of every call of `name!(…)` in `text` (string literals may hold brackets).
pub fn macro_calls<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("{name}!(");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(&open) {
        let start = from + at + open.len();
        let bytes = text.as_bytes();
        let (mut depth, mut i, mut in_string) = (1, start, false);
        while i < bytes.len() && depth > 0 {
            match (in_string, bytes[i]) {
                (true, b'\\') => i += 1,
                (true, b'"') => in_string = false,
                (false, b'"') => in_string = true,
                (false, b'(') => depth += 1,
                (false, b')') => depth -= 1,
                _ => {}
            }
            i += 1;
        }
        out.push(&text[start..i.saturating_sub(1)]);
        from = i;
    }
    out
}

/// The string literals of `args`, each with the character before its opening quote (spaces
/// skipped): `=` or `:` mark a field's value or a `target:`. A `\` line continuation is joined
/// as Rust joins it.
pub fn literals(args: &str) -> Vec<(Option<char>, String)> {
    let mut out = Vec::new();
    let mut chars = args.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            continue;
        }
        let before = args[..i].trim_end().chars().last();
        let mut value = String::new();
        while let Some((_, c)) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some((_, '\n')) => {
                        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                            chars.next();
                        }
                    }
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                c => value.push(c),
            }
        }
        out.push((before, value));
    }
    out
}

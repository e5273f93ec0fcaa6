//! Import of a CSV export of Django's `auth_user` table (for example
//! `\copy auth_user TO 'users.csv' CSV HEADER` in psql, or `sqlite3 -header -csv`). Needs the
//! columns `username,password,is_staff,is_active,date_joined,last_login` in any order; others
//! (`id`, `email`, `is_superuser`, …) are ignored. Each row becomes an [`ImportedUser`] or a
//! [`RowError`] with its line number; one bad row does not stop the import.
//!
//! Password hashes are kept as they are when [`super::hashing::verify`] can check them:
//! Django's `pbkdf2_sha256$…`, and Django's Argon2 format `argon2$argon2id$…` (Django writes
//! `"argon2"` followed by the PHC string, so the prefix is removed to give `$argon2id$…`).
//! Unusable passwords (`!…`, e.g. users created by `createsuperuser --noinput` or SSO) are
//! imported as unusable: such users cannot log in with a password. Other hashers (bcrypt, md5,
//! sha1, scrypt …) are refused per row. Error messages never include the password column.
//! Pure: reads from any `io::Read`, writes nothing; storing the users is the caller's job.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read};

use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

use super::hashing::is_supported_hash;
use super::username::{Username, UsernameError};

/// One user read from the export.
#[derive(Clone, PartialEq, Eq)]
pub struct ImportedUser {
    /// The username, NFKC-normalized as Django's forms do.
    pub username: Username,
    /// A hash [`super::hashing::verify`] understands (Argon2 PHC or `pbkdf2_sha256$…`), or an
    /// unusable `!…` password.
    pub password_hash: String,
    pub is_staff: bool,
    pub is_active: bool,
    /// Milliseconds since the Unix epoch (UTC).
    pub date_joined_ms: i64,
    /// Milliseconds since the Unix epoch (UTC); `None` when the user never logged in.
    pub last_login_ms: Option<i64>,
}

impl fmt::Debug for ImportedUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportedUser")
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("is_staff", &self.is_staff)
            .field("is_active", &self.is_active)
            .field("date_joined_ms", &self.date_joined_ms)
            .field("last_login_ms", &self.last_login_ms)
            .finish()
    }
}

/// The users that were read and the rows that were not.
#[derive(Debug, Default)]
pub struct Imported {
    pub users: Vec<ImportedUser>,
    pub errors: Vec<RowError>,
}

/// A row that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct RowError {
    /// 1-based line in the file where the row starts (the header is line 1).
    pub line: u64,
    pub kind: RowErrorKind,
}

/// Why a row could not be imported. Never contains the password column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowErrorKind {
    #[error("unreadable CSV row: {0}")]
    Csv(String),
    #[error("the row has no `{0}` field")]
    MissingField(&'static str),
    #[error("the `{0}` field is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("invalid username: {0}")]
    Username(UsernameError),
    #[error("username `{username}` duplicates line {first_line} (usernames are unique ignoring case)")]
    DuplicateUsername { username: String, first_line: u64 },
    #[error("empty password hash (use an unusable `!` password to import a user without one)")]
    EmptyPasswordHash,
    #[error("unsupported password hasher `{0}`: only pbkdf2_sha256 and argon2 hashes can be imported")]
    UnsupportedHasher(&'static str),
    #[error("the password field is not a Django password hash")]
    NotAHash,
    #[error("malformed `{0}` password hash")]
    MalformedHash(&'static str),
    #[error("`{column}` is not a boolean (t/f/true/false/1/0): `{value}`")]
    Bool { column: &'static str, value: String },
    #[error("`{column}` is not a timestamp like `2024-01-02 03:04:05.123456+00`: `{value}`")]
    Timestamp { column: &'static str, value: String },
}

/// The file as a whole could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the CSV header: {0}")]
    Header(#[source] csv::Error),
    #[error("the CSV header has no `{0}` column")]
    MissingColumn(&'static str),
}

const COLUMNS: [&str; 6] = ["username", "password", "is_staff", "is_active", "date_joined", "last_login"];

/// Read a CSV export of `auth_user`. Fails only if the header is unreadable or lacks a needed
/// column; every other problem is a [`RowError`].
pub fn import_csv<R: Read>(reader: R) -> Result<Imported, ImportError> {
    let mut csv = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(LineIndex::new(reader));
    let header = csv.byte_headers().map_err(ImportError::Header)?.clone();
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = String::from_utf8_lossy(h);
            let h = if i == 0 { h.trim_start_matches('\u{feff}') } else { &h };
            h.trim().to_ascii_lowercase()
        })
        .collect();
    let mut index = [0usize; 6];
    for (slot, column) in index.iter_mut().zip(COLUMNS) {
        *slot = names.iter().position(|n| n == column).ok_or(ImportError::MissingColumn(column))?;
    }

    let mut imported = Imported::default();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let line = csv.position().line();
        match csv.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().and_then(|p| csv.get_mut().line_at(p.byte())).unwrap_or(line);
                match parse_row(&record, &index) {
                    Ok(user) => {
                        let key = user.username.key();
                        if let Some(&first_line) = seen.get(&key) {
                            let username = user.username.into_string();
                            let kind = RowErrorKind::DuplicateUsername { username, first_line };
                            imported.errors.push(RowError { line, kind });
                        } else {
                            seen.insert(key, line);
                            imported.users.push(user);
                        }
                    }
                    Err(kind) => imported.errors.push(RowError { line, kind }),
                }
            }
            Err(e) => {
                let line = e.position().and_then(|p| csv.get_mut().line_at(p.byte())).unwrap_or(line);
                let kind = RowErrorKind::Csv(e.to_string());
                imported.errors.push(RowError { line, kind });
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
            }
        }
    }
    Ok(imported)
}

/// The reader under the CSV parser, noting where each non-empty line starts. The parser counts
/// only `\n` and reports a record where the previous one ended (before the empty lines it
/// skips); a row's line is that of its first byte, with `\n`, `\r\n` and a lone `\r` all ending
/// a line. Keeps only the lines the parser has read but not yet returned: bounded by its buffer.
struct LineIndex<R> {
    inner: R,
    /// Bytes read so far.
    offset: u64,
    /// The line of the next byte (1-based).
    line: u64,
    at_line_start: bool,
    after_cr: bool,
    /// (offset of the first byte, line) of the non-empty lines read and not yet passed.
    starts: VecDeque<(u64, u64)>,
}

impl<R> LineIndex<R> {
    fn new(inner: R) -> Self {
        LineIndex { inner, offset: 0, line: 1, at_line_start: true, after_cr: false, starts: VecDeque::new() }
    }

    /// The line of the first non-empty line starting at or after byte `at` (a record's start,
    /// as the parser reports it). Calls must not go backwards.
    fn line_at(&mut self, at: u64) -> Option<u64> {
        while self.starts.front().is_some_and(|&(start, _)| start < at) {
            self.starts.pop_front();
        }
        self.starts.front().map(|&(_, line)| line)
    }
}

impl<R: Read> Read for LineIndex<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            match b {
                b'\r' => {
                    self.line += 1;
                    self.at_line_start = true;
                    self.after_cr = true;
                }
                b'\n' => {
                    // The `\n` of a `\r\n` ends no second line.
                    if !std::mem::take(&mut self.after_cr) {
                        self.line += 1;
                    }
                    self.at_line_start = true;
                }
                _ => {
                    self.after_cr = false;
                    if std::mem::take(&mut self.at_line_start) {
                        self.starts.push_back((self.offset, self.line));
                    }
                }
            }
            self.offset += 1;
        }
        Ok(n)
    }
}

fn field<'r>(record: &'r csv::ByteRecord, index: &[usize; 6], which: usize) -> Result<&'r str, RowErrorKind> {
    let column = COLUMNS[which];
    let bytes = record.get(index[which]).ok_or(RowErrorKind::MissingField(column))?;
    std::str::from_utf8(bytes).map_err(|_| RowErrorKind::NotUtf8(column))
}

fn parse_row(record: &csv::ByteRecord, index: &[usize; 6]) -> Result<ImportedUser, RowErrorKind> {
    let username = Username::parse(field(record, index, 0)?).map_err(RowErrorKind::Username)?;
    let password_hash = import_hash(field(record, index, 1)?)?;
    let is_staff = parse_bool("is_staff", field(record, index, 2)?)?;
    let is_active = parse_bool("is_active", field(record, index, 3)?)?;
    let joined = field(record, index, 4)?;
    let date_joined_ms = parse_timestamp_ms(joined).ok_or_else(|| timestamp_error("date_joined", joined))?;
    let login = field(record, index, 5)?.trim();
    let last_login_ms = if login.is_empty() || login.eq_ignore_ascii_case("null") || login == "\\N" {
        None
    } else {
        Some(parse_timestamp_ms(login).ok_or_else(|| timestamp_error("last_login", login))?)
    };
    Ok(ImportedUser { username, password_hash, is_staff, is_active, date_joined_ms, last_login_ms })
}

/// The other hashers Django has shipped; only these names are echoed in errors (anything else
/// before a `$` might be part of a password exported by mistake).
const DJANGO_HASHERS: [&str; 10] = [
    "pbkdf2_sha1",
    "bcrypt_sha256",
    "bcrypt",
    "scrypt",
    "sha1",
    "md5",
    "unsalted_sha1",
    "unsalted_md5",
    "crypt",
    "argon2",
];

/// Turn Django's `password` column into a hash Roster stores, or say why not. Never echoes
/// the value: a badly exported column might hold something secret.
fn import_hash(django: &str) -> Result<String, RowErrorKind> {
    if django.is_empty() {
        return Err(RowErrorKind::EmptyPasswordHash);
    }
    if django.starts_with('!') {
        return Ok(django.to_owned());
    }
    let (algorithm, rest) = django.split_once('$').ok_or(RowErrorKind::NotAHash)?;
    let ours = match algorithm {
        "pbkdf2_sha256" => django.to_owned(),
        // Django's Argon2PasswordHasher: "argon2" + "$argon2id$v=19$m=…,t=…,p=…$salt$hash".
        "argon2" => format!("${rest}"),
        other => {
            return Err(match DJANGO_HASHERS.iter().find(|&&name| name == other) {
                Some(&name) => RowErrorKind::UnsupportedHasher(name),
                None => RowErrorKind::NotAHash,
            });
        }
    };
    if is_supported_hash(&ours) {
        Ok(ours)
    } else if algorithm == "argon2" {
        Err(RowErrorKind::MalformedHash("argon2"))
    } else {
        Err(RowErrorKind::MalformedHash("pbkdf2_sha256"))
    }
}

fn timestamp_error(column: &'static str, value: &str) -> RowErrorKind {
    RowErrorKind::Timestamp { column, value: value.chars().take(40).collect() }
}

fn parse_bool(column: &'static str, value: &str) -> Result<bool, RowErrorKind> {
    match value.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "1" => Ok(true),
        "f" | "false" | "0" => Ok(false),
        _ => Err(RowErrorKind::Bool { column, value: value.chars().take(40).collect() }),
    }
}

/// A cursor over ASCII digits and punctuation.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let (head, tail) = (self.rest.get(..n)?, self.rest.get(n..)?);
        if !head.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.rest = tail;
        Some(head.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
    }

    fn eat(&mut self, byte: u8) -> bool {
        match self.rest.split_first() {
            Some((&b, tail)) if b == byte => {
                self.rest = tail;
                true
            }
            _ => false,
        }
    }

    fn eat_any(&mut self, bytes: &[u8]) -> Option<u8> {
        let (&b, tail) = self.rest.split_first()?;
        bytes.contains(&b).then(|| {
            self.rest = tail;
            b
        })
    }
}

/// Milliseconds since the epoch from `YYYY-MM-DD[ T]HH:MM[:SS[.fraction]][offset]`, where the
/// offset is `Z`, `±HH`, `±HHMM` or `±HH:MM` (PostgreSQL writes `+00`), and no offset means UTC
/// (Django stores UTC when `USE_TZ`; SQLite exports have no offset). Fractions beyond
/// nanoseconds are truncated; milliseconds are floored.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let mut c = Cursor { rest: s.trim().as_bytes() };
    let year = c.digits(4)?;
    c.eat(b'-').then_some(())?;
    let month = c.digits(2)?;
    c.eat(b'-').then_some(())?;
    let day = c.digits(2)?;
    c.eat_any(b" T")?;
    let hour = c.digits(2)?;
    c.eat(b':').then_some(())?;
    let minute = c.digits(2)?;
    let second = if c.eat(b':') { c.digits(2)? } else { 0 };
    let mut nanos = 0u32;
    if c.eat(b'.') || c.eat(b',') {
        let len = c.rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        for i in 0..9 {
            nanos = nanos * 10 + if i < len { c.digits(1)? } else { 0 };
        }
        // Digits beyond nanoseconds are dropped (not folded into a number: no overflow).
        c.rest = c.rest.get(len.saturating_sub(9)..)?;
    }
    let offset = match c.eat_any(b"Zz+-") {
        None => UtcOffset::UTC,
        Some(b'Z' | b'z') => UtcOffset::UTC,
        Some(sign) => {
            let h = c.digits(2)?;
            let m = if c.rest.is_empty() {
                0
            } else {
                c.eat(b':');
                c.digits(2)?
            };
            if h > 23 || m > 59 {
                return None;
            }
            let (h, m) = (i8::try_from(h).ok()?, i8::try_from(m).ok()?);
            if sign == b'-' {
                UtcOffset::from_hms(-h, -m, 0).ok()?
            } else {
                UtcOffset::from_hms(h, m, 0).ok()?
            }
        }
    };
    if !c.rest.is_empty() {
        return None;
    }
    let year = i32::try_from(year).ok()?;
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    let hms = |v: u32| u8::try_from(v).ok();
    let time = Time::from_hms_nano(hms(hour)?, hms(minute)?, hms(second)?, nanos).ok()?;
    let nanos = PrimitiveDateTime::new(date, time).assume_offset(offset).unix_timestamp_nanos();
    i64::try_from(nanos.div_euclid(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PBKDF2: &str = "pbkdf2_sha256$1000$RosterSalt123456$tvTnA9ahDQctsUfcBSMh6CxfPDHnsIdp/a7ex8jzDv0=";
    const DJANGO_ARGON2: &str =
        "argon2$argon2id$v=19$m=102400,t=2,p=8$Um9zdGVyU2FsdDEyMzQ1Ng$pYvs6bWfI64b1zPjlUtCAru+sU1D1txTLnYpP92XqnQ";

    fn import(csv: &str) -> Imported {
        match import_csv(csv.as_bytes()) {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        }
    }

    /// A real export: Django 5.2.19 on SQLite (`USE_TZ=True`) made these users with
    /// `create_user`, `make_password(..., hasher="argon2")` and `set_unusable_password()`, and
    /// Python's `csv.writer` dumped `select * from auth_user` (booleans as 0/1, naive UTC
    /// timestamps). Both usable passwords are "correct horse battery staple".
    const SQLITE_EXPORT: &str = r#"id,password,last_login,is_superuser,username,last_name,email,is_staff,is_active,date_joined,first_name
1,pbkdf2_sha256$1000$PttNMc6PhiKoIXQ88iLvyL$8yN67WvkTA55zVBSyiXNUPgzE6dBTcosww4kV8MKW/Q=,,0,alice,,,0,1,2024-01-02 03:04:05.123456,
2,"argon2$argon2id$v=19$m=102400,t=2,p=8$WloyVzFvMDBZcXZudDh2YWpGM0J3SQ$yPRynLesto8SgK6JGw+fvyxjMjthVAz4FwB57+YwqoI",2024-05-06 07:08:09,0,Zoë.Ünïcode,,,1,1,2026-11-24 01:15:08.641408,
3,!5rZIxfjedlfJI8pkMZQ9xUrWvfB1FAtTvmC2XMov,,0,sso,,s@example.com,0,0,2026-11-24 01:15:10.484526,
"#;

    #[test]
    fn imports_a_real_django_sqlite_export() {
        let got = import(SQLITE_EXPORT);
        assert_eq!(got.errors, []);
        let [alice, zoe, sso] = got.users.as_slice() else { panic!("{:?}", got.users) };
        assert_eq!(alice.username.as_str(), "alice");
        assert_eq!(alice.date_joined_ms, 1_704_164_645_123);
        assert_eq!(alice.last_login_ms, None);
        assert!(!alice.is_staff && alice.is_active);
        assert_eq!(zoe.username.as_str(), "Zoë.Ünïcode");
        assert!(zoe.is_staff);
        assert_eq!(zoe.last_login_ms, Some(1_714_979_289_000));
        assert!(sso.password_hash.starts_with('!') && !sso.is_active);
        for user in [alice, zoe] {
            assert_eq!(
                super::super::hashing::verify("correct horse battery staple", &user.password_hash),
                super::super::hashing::Verification::Valid { needs_rehash: true },
                "{user:?}"
            );
        }
        assert_eq!(
            super::super::hashing::verify("correct horse battery staple", &sso.password_hash),
            super::super::hashing::Verification::Invalid
        );
    }

    #[test]
    fn imports_a_postgres_export() {
        let csv = format!(
            "id,password,last_login,is_superuser,username,first_name,last_name,email,is_staff,is_active,date_joined\n\
             1,{PBKDF2},2024-01-02 03:04:05.123456+00,t,admin,,,admin@example.com,t,t,2023-12-31 23:59:59.999+00\n\
             2,\"{DJANGO_ARGON2}\",,f,Zoë,Zoë,\"Smith, Jr\",,f,f,2024-06-01T12:00:00Z\n\
             3,!ZxRcUnusable,\\N,f,sso.user,,,,0,1,2024-06-01 12:00:00\n"
        );
        let got = import(&csv);
        assert_eq!(got.errors, []);
        let [admin, zoe, sso] = got.users.as_slice() else { panic!("{:?}", got.users) };
        assert_eq!(admin.username.as_str(), "admin");
        assert_eq!(admin.password_hash, PBKDF2);
        assert!(admin.is_staff && admin.is_active);
        assert_eq!(admin.last_login_ms, Some(1_704_164_645_123));
        assert_eq!(admin.date_joined_ms, 1_704_067_199_999);
        assert_eq!(zoe.username.as_str(), "Zoë");
        assert_eq!(zoe.password_hash, &DJANGO_ARGON2["argon2".len()..]);
        assert!(zoe.password_hash.starts_with("$argon2id$v=19$"));
        assert!(!zoe.is_staff && !zoe.is_active);
        assert_eq!(zoe.last_login_ms, None);
        assert_eq!(zoe.date_joined_ms, 1_717_243_200_000);
        assert_eq!(sso.password_hash, "!ZxRcUnusable");
        assert_eq!((sso.is_staff, sso.is_active), (false, true));
        assert_eq!(sso.last_login_ms, None);
    }

    #[test]
    fn imported_django_hashes_verify() {
        let got = import(&format!(
            "username,password,is_staff,is_active,date_joined,last_login\n\
             a,{PBKDF2},f,t,2024-01-01 00:00:00+00,\n\
             b,\"{DJANGO_ARGON2}\",f,t,2024-01-01 00:00:00+00,\n"
        ));
        assert_eq!(got.users.len(), 2);
        for user in &got.users {
            assert_eq!(
                super::super::hashing::verify("correct horse battery staple", &user.password_hash),
                super::super::hashing::Verification::Valid { needs_rehash: true }
            );
        }
    }

    #[test]
    fn reports_bad_rows_with_line_numbers_and_goes_on() {
        let csv = format!(
            "username,password,is_staff,is_active,date_joined,last_login\n\
             good,{PBKDF2},f,t,2024-01-01 00:00:00+00,\n\
             bad name,{PBKDF2},f,t,2024-01-01 00:00:00+00,\n\
             md5user,md5$salt$0123456789abcdef,f,t,2024-01-01 00:00:00+00,\n\
             plain,hunter2 secret,f,t,2024-01-01 00:00:00+00,\n\
             empty,,f,t,2024-01-01 00:00:00+00,\n\
             broken,pbkdf2_sha256$1000$salt$bad,f,t,2024-01-01 00:00:00+00,\n\
             flag,{PBKDF2},yes,t,2024-01-01 00:00:00+00,\n\
             when,{PBKDF2},f,t,yesterday,\n\
             GOOD,{PBKDF2},f,t,2024-01-01 00:00:00+00,\n\
             short,{PBKDF2}\n\
             \"multi\nline\",{PBKDF2},f,t,2024-01-01 00:00:00+00,\n\
             last,{PBKDF2},f,t,2024-01-01 00:00:00+00,2024-13-01 00:00:00\n\
             ok2,{PBKDF2},F,TRUE,2024-01-01 00:00:00+00,\n"
        );
        let got = import(&csv);
        let names: Vec<&str> = got.users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["good", "ok2"]);
        let errors: Vec<(u64, RowErrorKind)> = got.errors.into_iter().map(|e| (e.line, e.kind)).collect();
        assert_eq!(
            errors,
            [
                (3, RowErrorKind::Username(UsernameError::Invalid)),
                (4, RowErrorKind::UnsupportedHasher("md5")),
                (5, RowErrorKind::NotAHash),
                (6, RowErrorKind::EmptyPasswordHash),
                (7, RowErrorKind::MalformedHash("pbkdf2_sha256")),
                (8, RowErrorKind::Bool { column: "is_staff", value: "yes".into() }),
                (9, RowErrorKind::Timestamp { column: "date_joined", value: "yesterday".into() }),
                (10, RowErrorKind::DuplicateUsername { username: "GOOD".into(), first_line: 2 }),
                (11, RowErrorKind::MissingField("is_staff")),
                (12, RowErrorKind::Username(UsernameError::Invalid)),
                (14, RowErrorKind::Timestamp { column: "last_login", value: "2024-13-01 00:00:00".into() }),
            ]
        );
    }

    /// Found by the `django_import` fuzz target: Windows (`\r\n`) and old Mac (`\r`) line ends
    /// gave wrong line numbers (every `\r`-ended row was "line 1").
    #[test]
    fn line_numbers_count_cr_and_crlf_line_ends() {
        let lf = format!(
            "last_login,date_joined,is_active,is_staff,password,username\n\
             ,2024-01-01 00:00,t,f,{PBKDF2},ok\n\
             ,2024-01-01 00:00,t,f,{PBKDF2},no way\n\
             ,2024-01-01 00:00,t,f,{PBKDF2},\"two\nlines\"\n\
             \n\
             ,2024-01-01 00:00,t,maybe,{PBKDF2},flag\n"
        );
        let lines = |csv: &str| -> Vec<u64> { import(csv).errors.iter().map(|e| e.line).collect() };
        assert_eq!(lines(&lf), [3, 4, 7]);
        assert_eq!(lines(&lf.replace('\n', "\r\n")), [3, 4, 7], "CRLF");
        assert_eq!(lines(&lf.replace('\n', "\r")), [3, 4, 7], "CR");
        assert_eq!(lines(&lf.replace("\"two\nlines\"", "\"two\r\nlines\"")), [3, 4, 7], "CRLF in a quoted field");
    }

    #[test]
    fn errors_never_show_the_password_column() {
        let got = import("username,password,is_staff,is_active,date_joined,last_login\nu,hunter2 secret,f,t,x,\nv,sekrit$word,f,t,x,\n");
        for e in &got.errors {
            let shown = e.to_string();
            assert!(!shown.contains("hunter2") && !shown.contains("sekrit"), "{shown}");
        }
        assert_eq!(got.errors.len(), 2);
        assert!(!format!(
            "{:?}",
            import(&format!(
                "username,password,is_staff,is_active,date_joined,last_login\nu,{PBKDF2},f,t,2024-01-01 00:00,\n"
            ))
            .users
        )
        .contains("tvTnA9"));
    }

    #[test]
    fn header_problems_are_fatal() {
        assert!(matches!(
            import_csv("username,password,is_staff,is_active,date_joined\n".as_bytes()),
            Err(ImportError::MissingColumn("last_login"))
        ));
        assert!(matches!(import_csv("".as_bytes()), Err(ImportError::MissingColumn("username"))));
        // A byte-order mark and odd case/spacing in the header are fine.
        let got = import("\u{feff}Username, PASSWORD ,is_staff,is_active,date_joined,last_login\n");
        assert_eq!((got.users.len(), got.errors.len()), (0, 0));
    }

    #[test]
    fn timestamps() {
        let ms = parse_timestamp_ms;
        assert_eq!(ms("1970-01-01 00:00:00+00"), Some(0));
        assert_eq!(ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(ms("1970-01-01 00:00:00"), Some(0));
        assert_eq!(ms("1970-01-01 00:00"), Some(0));
        assert_eq!(ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(ms("1970-01-01T01:00:00+0100"), Some(0));
        assert_eq!(ms("1969-12-31 19:00:00-05"), Some(0));
        assert_eq!(ms("1970-01-01 00:00:00.0019"), Some(1));
        assert_eq!(ms("1969-12-31 23:59:59.9995+00"), Some(-1), "floored");
        assert_eq!(ms("2024-02-29 12:34:56.123456789123+00"), Some(1_709_210_096_123));
        assert_eq!(ms(" 2024-01-02 03:04:05.123456+00 "), Some(1_704_164_645_123));
        for bad in [
            "",
            "2024",
            "2024-02-30 00:00:00",
            "2024-01-01",
            "2024-01-01 24:00:00",
            "2024-01-01 00:00:00+",
            "2024-01-01 00:00:00.",
            "2024-01-01 00:00:00+25",
            "2024-01-01 00:00:00 junk",
            "२०२४-01-01 00:00:00",
            "2024-01-01 00:00:00+00:0",
        ] {
            assert_eq!(ms(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = parse_timestamp_ms(&s);
            let _ = import_csv(format!("username,password,is_staff,is_active,date_joined,last_login\n{s}").as_bytes());
            let _ = import_csv(s.as_bytes());
        }

        #[test]
        fn never_panics_on_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut input = b"username,password,is_staff,is_active,date_joined,last_login\n".to_vec();
            input.extend(bytes);
            let _ = import_csv(input.as_slice());
        }
    }
}

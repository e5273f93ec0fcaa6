//! The config file (`--config roster.toml`, `ROSTER_CONFIG`): a third source of settings, below
//! flags and environment variables and above the built-in defaults, and the report of the
//! effective settings that `roster config` (and `serve --print-settings`) prints.
//!
//! The file holds one `key = value` line per setting, the key being the long flag without its
//! dashes (`presence-grace = "5s"`). Nothing here names a setting: the keys are the long flags
//! of `roster serve` as clap defines them, so a flag added later is a key at once. A file value
//! is checked by the flag's own clap value parser (the same one a flag or an environment
//! variable goes through) and then becomes that flag's default value, so clap itself applies
//! the order flag > environment > file > default, and `ArgMatches::value_source` tells where
//! each value came from. Unknown keys and bad values are errors naming the file and the key;
//! a file named but missing is an error.
//!
//! This module reads the config file and nothing else: no sockets, no database. Values are
//! printed through [`redact`], so no password in a URL (and no setting whose name says it is a
//! secret) reaches the output.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::error::ContextKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use toml_edit::{Item, Value};

use crate::settings::{redact_url, Cli};

/// The id of the `--config` argument (see [`Cli`]).
const CONFIG_ARG: &str = "config";

/// Long flags of `roster serve` that are actions, not settings: no file key for them.
const NOT_SETTINGS: &[&str] = &["help", "version", CONFIG_ARG, "print-settings"];

/// Why the command line and the config file could not be turned into settings.
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    /// A command-line or environment problem, or `--help`/`--version`: clap formats and exits.
    #[error(transparent)]
    Args(#[from] clap::Error),
    #[error("cannot read the config file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    /// `at` is `FILE:LINE`.
    #[error("{at}: unknown key `{key}` in the config file{hint}")]
    UnknownKey { at: String, key: String, hint: String },
    #[error("{at}: bad value for `{key}`: {reason}")]
    BadValue { at: String, key: String, reason: String },
}

/// The parsed command line and the report of the settings it ends up with.
#[derive(Debug)]
pub struct Parsed {
    pub cli: Cli,
    pub settings: Effective,
}

/// Parses `args` (the program name first) with the config file they name, if any.
pub fn parse<I, T>(args: I) -> Result<Parsed, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // A first pass finds `--config` / `ROSTER_CONFIG` (and answers --help and bad flags).
    let first = Cli::command().try_get_matches_from(&args)?;
    let file = leaf(&first).get_one::<PathBuf>(CONFIG_ARG).cloned();
    let mut command = Cli::command();
    let mut from_file = BTreeSet::new();
    if let Some(path) = &file {
        let values = read_file(path, &command)?;
        from_file = values.keys().cloned().collect();
        command = with_defaults(command, &values);
    }
    let matches = command.try_get_matches_from_mut(&args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    command.build();
    let settings = Effective::new(&command, &matches, file, &from_file);
    Ok(Parsed { cli, settings })
}

/// The innermost subcommand's matches (global arguments are propagated down to it).
fn leaf(matches: &ArgMatches) -> &ArgMatches {
    match matches.subcommand() {
        Some((_, sub)) => leaf(sub),
        None => matches,
    }
}

/// The arguments of `roster serve` that are settings: each long flag is a file key.
fn setting_args(command: &Command) -> Vec<&Arg> {
    command
        .find_subcommand("serve")
        .expect("`roster serve` exists")
        .get_arguments()
        .filter(|a| a.get_long().is_some_and(|long| !NOT_SETTINGS.contains(&long)))
        .collect()
}

/// Reads the file into `key -> values`, each value already accepted by its flag's parser.
fn read_file(path: &Path, command: &Command) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let doc = toml_edit::Document::parse(text.as_str())
        .map_err(|e| ConfigError::Syntax { path: path.to_owned(), message: e.to_string() })?;
    let args = setting_args(command);
    let mut values = BTreeMap::new();
    for (key, item) in doc.iter() {
        let line = item.span().map_or(0, |span| text[..span.start].matches('\n').count() + 1);
        let at = format!("{}:{line}", path.display());
        let Some(arg) = args.iter().find(|a| a.get_long() == Some(key)) else {
            return Err(ConfigError::UnknownKey { at, key: key.to_owned(), hint: unknown_key_hint(key, &args) });
        };
        let vals = file_values(arg, item)
            .and_then(|vals| check_with_clap(arg, &vals).map(|()| vals))
            .map_err(|reason| ConfigError::BadValue { at, key: key.to_owned(), reason })?;
        values.insert(key.to_owned(), vals);
    }
    Ok(values)
}

fn unknown_key_hint(key: &str, args: &[&Arg]) -> String {
    let known: Vec<&str> = args.iter().filter_map(|a| a.get_long()).collect();
    let dashed = key.replace('_', "-");
    if known.contains(&dashed.as_str()) {
        format!(" (did you mean `{dashed}`? keys are the long flags without their dashes)")
    } else {
        format!(" (the keys are the long flags of `roster serve`: {})", known.join(", "))
    }
}

/// The TOML value of `item` as the strings a command line would carry for `arg`.
fn file_values(arg: &Arg, item: &Item) -> Result<Vec<String>, String> {
    let value = match item {
        Item::Value(v) => v,
        _ => return Err("a table is not a setting: write `key = value` lines at the top of the file".to_owned()),
    };
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return match value {
            Value::Boolean(b) => Ok(vec![b.value().to_string()]),
            other => Err(format!("expected true or false, found {}", a_type(other))),
        };
    }
    match value {
        Value::Array(items) if matches!(arg.get_action(), ArgAction::Append) => items.iter().map(scalar).collect(),
        Value::Array(_) => Err("expected one value, found an array".to_owned()),
        other => scalar(other).map(|v| vec![v]),
    }
}

fn scalar(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.value().clone()),
        Value::Integer(i) => Ok(i.value().to_string()),
        Value::Float(f) => Ok(f.value().to_string()),
        Value::Boolean(b) => Ok(b.value().to_string()),
        other => Err(format!("expected a string or a number, found {}", a_type(other))),
    }
}

/// "an integer", "a string", ...
fn a_type(value: &Value) -> String {
    let name = value.type_name();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {name}")
}

/// Runs `values` through `arg`'s own value parser, as clap does for a flag.
fn check_with_clap(arg: &Arg, values: &[String]) -> Result<(), String> {
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return Ok(()); // a TOML boolean, checked in `file_values`
    }
    let long = arg.get_long().expect("settings have long flags");
    let argv = values.iter().map(|v| format!("--{long}={v}"));
    let lone = Command::new("roster").no_binary_name(true).arg(arg.clone());
    match lone.try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(e) => Err(clap_reason(&e, values)),
    }
}

/// What a clap error says about a value, without clap's framing (which names the flag, not
/// the file key), and with the value redacted.
fn clap_reason(e: &clap::Error, values: &[String]) -> String {
    let shown = values.iter().map(|v| format!("{:?}", redact_url(v))).collect::<Vec<_>>().join(", ");
    if let Some(cause) = std::error::Error::source(e) {
        return format!("{shown}: {cause}");
    }
    if let Some(clap::error::ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("{shown}: expected one of {}", valid.join(", "));
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or_default().trim_start_matches("error: ");
    format!("{shown}: {}", redact_url(first))
}

/// `command` with the file's values as the defaults of every argument (in every subcommand)
/// whose long flag is a key of the file.
fn with_defaults(command: Command, values: &BTreeMap<String, Vec<String>>) -> Command {
    let ids: Vec<(String, Vec<String>)> = command
        .get_arguments()
        .filter_map(|a| Some((a.get_id().to_string(), values.get(a.get_long()?)?.clone())))
        .collect();
    let mut command = command;
    for (id, vals) in ids {
        command = command.mut_arg(id, |a| a.default_values(vals));
    }
    let subcommands: Vec<String> = command.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    for name in subcommands {
        command = command.mut_subcommand(name, |s| with_defaults(s, values));
    }
    command
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    /// The variable's name.
    Env(String),
    File,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::File => f.write_str("file"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// One setting as `roster config` shows it.
#[derive(Debug, Clone)]
pub struct Setting {
    pub key: String,
    /// As a TOML value, redacted; `None` when unset and without a default.
    pub value: Option<String>,
    pub source: Source,
}

/// The settings of the command being run, with their sources. Its `Display` is a TOML file
/// (sources as comments) that could serve as a config file, but for the redacted secrets.
#[derive(Debug, Clone)]
pub struct Effective {
    pub file: Option<PathBuf>,
    pub settings: Vec<Setting>,
}

impl Effective {
    /// `command` must be built (so global arguments reached the subcommands).
    fn new(command: &Command, matches: &ArgMatches, file: Option<PathBuf>, from_file: &BTreeSet<String>) -> Effective {
        // In the order `serve` defines them (giving an argument a default moves it to the end).
        let pristine = Cli::command();
        let keys: Vec<&str> = setting_args(&pristine).iter().filter_map(|a| a.get_long()).collect();
        let (mut command, mut matches) = (command, matches);
        while let Some((name, sub)) = matches.subcommand() {
            command = command.find_subcommand(name).expect("matched subcommands exist");
            matches = sub;
        }
        let mut settings: Vec<Setting> = command
            .get_arguments()
            .filter_map(|arg| {
                let key = arg.get_long().filter(|long| keys.contains(long))?;
                let id = arg.get_id().as_str();
                let source = match matches.value_source(id) {
                    Some(ValueSource::CommandLine) => Source::Flag,
                    Some(ValueSource::EnvVariable) => {
                        Source::Env(arg.get_env().map(|v| v.to_string_lossy().into_owned()).unwrap_or_default())
                    }
                    _ if from_file.contains(key) => Source::File,
                    _ => Source::Default,
                };
                Some(Setting { key: key.to_owned(), value: toml_value(arg, matches), source })
            })
            .collect();
        settings.sort_by_key(|s| keys.iter().position(|k| *k == s.key));
        Effective { file, settings }
    }

    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.key == key)
    }
}

/// The value of `arg` in `matches` as TOML, through [`redact`].
fn toml_value(arg: &Arg, matches: &ArgMatches) -> Option<String> {
    let id = arg.get_id().as_str();
    let key = arg.get_long().unwrap_or(id);
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return Some(matches.get_flag(id).to_string());
    }
    let raw: Vec<String> =
        matches.get_raw(id).into_iter().flatten().map(|v| redact(key, &v.to_string_lossy())).collect();
    if matches!(arg.get_action(), ArgAction::Append) {
        return Some(format!("[{}]", raw.iter().map(|v| toml_scalar(v)).collect::<Vec<_>>().join(", ")));
    }
    raw.first().map(|v| toml_scalar(v))
}

/// A bare integer when the text is one, else a TOML basic string (JSON's escapes are TOML's).
fn toml_scalar(text: &str) -> String {
    if !text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()) {
        text.to_owned()
    } else {
        serde_json::to_string(text).unwrap_or_default()
    }
}

/// A value as it may be shown: `***` for a setting whose name says it is a secret, else the
/// text with any URL password replaced (`postgres://u:***@h/db`, `redis://:***@h`).
pub fn redact(key: &str, value: &str) -> String {
    if ["password", "secret", "token"].iter().any(|word| key.contains(word)) {
        "***".to_owned()
    } else {
        redact_url(value)
    }
}

impl fmt::Display for Effective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# The effective settings: flag > environment (ROSTER_*) > config file > default.")?;
        writeln!(f, "# Passwords and other secrets are shown as ***.")?;
        match &self.file {
            Some(path) => writeln!(f, "# Config file: {}", path.display())?,
            None => writeln!(f, "# No config file (--config FILE or ROSTER_CONFIG).")?,
        }
        let lines: Vec<(String, &Source)> = self
            .settings
            .iter()
            .map(|s| match &s.value {
                Some(v) => (format!("{} = {v}", s.key), &s.source),
                None => (format!("# {} is not set", s.key), &s.source),
            })
            .collect();
        let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for (line, source) in lines {
            writeln!(f, "{line:width$}  # {source}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with_file(toml: &str, args: &[&str]) -> Result<Parsed, ConfigError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("roster.toml");
        std::fs::write(&path, toml).expect("write config");
        let mut argv = vec!["roster".to_owned()];
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        argv.extend(["--config".to_owned(), path.display().to_string()]);
        parse(argv)
    }

    #[test]
    fn file_values_become_the_defaults() {
        let parsed = parse_with_file(
            "presence-grace = \"7s\"\npage-size = 50\nsecure-cookies = true\nallowed-origins = [\"https://a\", \"https://b\"]\n",
            &["serve", "--page-size", "60"],
        )
        .expect("parses");
        let Some(crate::settings::Command::Serve(serve)) = parsed.cli.command else { panic!("serve") };
        assert_eq!(serve.presence_grace, std::time::Duration::from_secs(7));
        assert_eq!(serve.page_size, 60, "the flag wins");
        assert!(serve.secure_cookies);
        assert_eq!(serve.allowed_origins, ["https://a", "https://b"]);
        let s = &parsed.settings;
        assert_eq!(s.get("presence-grace").map(|s| &s.source), Some(&Source::File));
        assert_eq!(s.get("page-size").map(|s| &s.source), Some(&Source::Flag));
        assert_eq!(s.get("bind").map(|s| &s.source), Some(&Source::Default));
        assert_eq!(s.get("allowed-origins").and_then(|s| s.value.as_deref()), Some("[\"https://a\", \"https://b\"]"));
    }

    #[test]
    fn errors_name_the_key() {
        let err = parse_with_file("presence_grace = \"1s\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("unknown key `presence_grace`") && err.contains("`presence-grace`"), "{err}");
        assert!(err.contains("roster.toml:1"), "{err}");
        let err = parse_with_file("bind = \"0.0.0.0:80\"\n\npage-size = 0\n", &[]).unwrap_err().to_string();
        assert!(err.contains("roster.toml:3: bad value for `page-size`"), "{err}");
        let err = parse_with_file("log-format = \"xml\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("`log-format`") && err.contains("text, json"), "{err}");
        let err = parse_with_file("secure-cookies = \"yes\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("`secure-cookies`") && err.contains("true or false"), "{err}");
        let err = parse_with_file("tick = [\"1s\"]\n", &[]).unwrap_err().to_string();
        assert!(err.contains("`tick`") && err.contains("found an array"), "{err}");
        let err = parse_with_file("[serve]\nbind = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("unknown key `serve`"), "{err}");
        let err = parse_with_file("print-settings = true\n", &[]).unwrap_err().to_string();
        assert!(err.contains("unknown key `print-settings`"), "{err}");
        let err = parse_with_file("bind = \n", &[]).unwrap_err().to_string();
        assert!(err.contains("not valid TOML"), "{err}");
    }

    #[test]
    fn urls_in_settings_are_redacted() {
        let parsed =
            parse_with_file("database-url = \"postgres://roster:hunter2@db/roster\"\n", &["config"]).expect("parses");
        let text = parsed.settings.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("database-url = \"postgres://roster:***@db/roster\""), "{text}");
        assert_eq!(redact("admin-password", "x"), "***");
        assert_eq!(redact("redis-url", "redis://:pw@h:6379"), "redis://:***@h:6379");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = parse(["roster", "config", "--config", "/nonexistent/roster.toml"]).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/roster.toml"), "{err}");
    }
}

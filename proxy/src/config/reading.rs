//! What reading a file works with, below the key tables and the readers:
//! the error collector, the declaration of a key and what it takes, and
//! the configuration being built that readers write into. Nothing here
//! reads a value; [`super::raw`] has the typed getters, [`super::keys`]
//! the tables and their readers, [`super::build`] the walk.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::error::ConfigError;
use super::Config;

/// Errors and warnings collected while walking a document.
#[derive(Debug, Default)]
pub struct Ctx {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

impl Ctx {
    pub fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(key, message));
    }

    /// An error at `key`: `expected <what>, got <v>`.
    pub fn expected(&mut self, key: impl Into<String>, what: &str, v: &Value) {
        self.err(key, format!("expected {what}, got {}", show(v)));
    }

    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }
}

/// A short description of a value for error messages.
pub fn show(v: &Value) -> String {
    let s = match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// How a document is read.
pub(super) struct Options<'a> {
    /// Directory of the config file: relative `file:` driver paths start there.
    pub base_dir: Option<&'a Path>,
    /// Check that files named by the config exist (certificates, static
    /// directory, routes file). Off for pure parsing.
    pub check_files: bool,
}

/// The configuration being built from a document, and what was found.
pub(super) struct Builder<'o> {
    pub ctx: Ctx,
    pub cfg: Config,
    pub opts: &'o Options<'o>,
    /// Every listener with the key it came from, to find duplicates.
    pub listeners: Vec<(SocketAddr, String)>,
    /// Files to check, with their keys.
    pub files: Vec<(String, PathBuf)>,
    /// Directories to check, with their keys.
    pub dirs: Vec<(String, PathBuf)>,
}

/// One key of one object of the file.
#[derive(Clone, Copy)]
pub(super) struct Key {
    pub name: &'static str,
    pub kind: Kind,
    /// What it means, in one line: how its row in docs/configuration.md
    /// begins (a test reads the docs).
    #[cfg_attr(not(test), allow(dead_code))]
    pub doc: &'static str,
    /// It holds a Redis password: its printer censors it (a test checks).
    #[cfg_attr(not(test), allow(dead_code))]
    pub secret: bool,
    /// `null` reaches the reader (it means something here); elsewhere
    /// `null` counts as absent, as Hipache's `undefined` did.
    pub reads_null: bool,
    /// The keys of the object it holds, or of each object of its list.
    pub keys: &'static [Key],
}

/// A field of [`Config`], to read a value into and print it from.
pub(super) struct Field<T: 'static> {
    pub get: fn(&Config) -> &T,
    pub set: fn(&mut Config) -> &mut T,
}

impl<T> Clone for Field<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Field<T> {}

/// What a key takes, and so how it is read and printed.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    /// `true` or `false`.
    Flag(Field<bool>),
    /// A whole number in `min..=max`.
    Count(Field<usize>, usize, usize),
    /// Seconds, fractions allowed.
    Seconds(Field<Duration>),
    /// Seconds, fractions allowed; `0` disables.
    Timeout(Field<Option<Duration>>),
    /// A size in bytes (`"512MiB"`), more than 0; `null` or `false`: none.
    Limit(Field<Option<u64>>),
    /// A directory, which must exist; `null`, `false` or `""`: none.
    Dir(Field<Option<PathBuf>>),
    /// A file, which must exist.
    File(Field<Option<PathBuf>>),
    /// Anything else: its reader and its printer.
    Custom(fn(&mut Builder<'_>, &str, &Value), fn(&Config) -> Value),
    /// Read with its neighbours by the code of its object (a listener, the
    /// legacy Redis connection, a section); the default the docs show, when
    /// the docs give it a row (a test reads the docs).
    #[cfg_attr(not(test), allow(dead_code))]
    Part(Option<fn() -> Value>),
    /// Hipache's, accepted and ignored: the warning, given the key's path.
    Ignored(fn(&str, &Value) -> String),
}

//! Configuration errors: every problem found in a file, each with its key.

use std::fmt;
use std::path::PathBuf;

/// One problem in the configuration, found at `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path to the offending value, such as `server.port` or
    /// `http.bind[1]`; `(file)` for a document that does not parse, and the
    /// flag name (`--driver`) for a bad command-line or environment value.
    pub key: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found at once, in the order they were found. Never empty
/// when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors {
    /// The configuration file the errors are about, when there is one.
    pub file: Option<PathBuf>,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// A list holding one error.
    pub fn one(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: None,
            errors: vec![ConfigError::new(key, message)],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// Whether some error was reported at exactly `key`.
    pub fn has_key(&self, key: &str) -> bool {
        self.errors.iter().any(|e| e.key == key)
    }
}

/// One error per line, as `<key>: <message>`.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

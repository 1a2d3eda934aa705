//! `hipache routes check FILE|-`: a route document validated offline, as
//! this proxy would read it.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

/// `hipache routes check FILE|-`: 0 valid, 1 invalid (every error on
/// standard error), 2 unreadable.
pub fn routes_check(file: &Path) -> ExitCode {
    let (name, json) = match read(file) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("hipache routes check: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match crate::routing::documents::compile(&json) {
        Ok(doc) => {
            let backends = doc.backends.len();
            println!(
                "{name}: valid: {} rules, {backends} backends",
                doc.rules.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                // One line per error, whatever the message holds.
                eprintln!("{}", e.to_string().replace(['\n', '\r'], " "));
            }
            ExitCode::from(1)
        }
    }
}

/// A file's name and bytes, or standard input's for `-`.
pub fn read(file: &Path) -> std::io::Result<(String, Vec<u8>)> {
    if file.as_os_str() == "-" {
        let mut json = Vec::new();
        std::io::stdin().read_to_end(&mut json)?;
        return Ok(("-".to_owned(), json));
    }
    Ok((file.display().to_string(), std::fs::read(file)?))
}

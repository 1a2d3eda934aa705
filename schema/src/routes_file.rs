//! The YAML routes file: the same frontends as Redis, for running without
//! Redis (a laptop, a demo, a test). Keys are frontend hosts exactly as in
//! Redis after `frontend:` (`www.example.com`, `*.example.com`, `*`), values
//! are the list (identifier first, then backend elements):
//!
//! ```yaml
//! frontends:
//!   www.example.com: [mysite, "http://127.0.0.1:8081", "http://127.0.0.1:8082"]
//!   "*.example.com": [wildcard, "http://127.0.0.1:8083"]
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    #[serde(default)]
    pub frontends: BTreeMap<String, Vec<String>>,
}

impl RoutesFile {
    /// Looks up one frontend host's list, lower-casing file keys the way
    /// request hosts are normalised.
    pub fn normalized(self) -> BTreeMap<String, Vec<String>> {
        self.frontends
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let f: RoutesFile = serde_yaml::from_str(
            "frontends:\n  WWW.example.com: [mysite, \"http://127.0.0.1:8081\"]\n  \"*\": [all]\n",
        )
        .unwrap();
        let m = f.normalized();
        assert_eq!(m["www.example.com"], ["mysite", "http://127.0.0.1:8081"]);
        assert_eq!(m["*"], ["all"]);
    }

    #[test]
    fn rejects_unknown_sections() {
        assert!(serde_yaml::from_str::<RoutesFile>("frontend: {}").is_err());
    }
}

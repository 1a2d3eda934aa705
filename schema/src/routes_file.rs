//! The YAML routes file: the same frontends as Redis, for running without
//! Redis (a laptop, a demo, a test). Keys are frontend hosts exactly as in
//! Redis after `frontend:` (`www.example.com`, `*.example.com`, `*`), values
//! are the list (identifier first, then backend elements):
//!
//! ```yaml
//! frontends:
//!   www.example.com: [mysite, "http://127.0.0.1:8081", "http://127.0.0.1:8082"]
//!   "*.example.com": [wildcard, "http://127.0.0.1:8083"]
//! routes:
//!   shop.example.com:
//!     id: shop
//!     rules:
//!       - backends: [{ url: "http://127.0.0.1:8084" }]
//! ```
//!
//! `routes` holds route documents (`docs/routes.md`) in YAML form, as
//! `routes:<host>` keys hold them in JSON.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    #[serde(default)]
    pub frontends: BTreeMap<String, Vec<String>>,
    /// Route documents by frontend host, undecoded (see [`crate::routes`]).
    #[serde(default)]
    pub routes: BTreeMap<String, serde_json::Value>,
}

impl RoutesFile {
    /// The lists by frontend host, lower-casing file keys the way request
    /// hosts are normalised.
    pub fn normalized(&self) -> BTreeMap<String, Vec<String>> {
        self.frontends
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect()
    }

    /// The route documents by frontend host (lower-cased), as JSON text.
    pub fn documents(&self) -> BTreeMap<String, String> {
        self.routes
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
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
    fn route_documents_come_out_as_json() {
        let f: RoutesFile = serde_yaml::from_str(
            "routes:\n  Shop.example.com:\n    id: shop\n    rules:\n      - backends: [{ url: \"http://127.0.0.1:8084\" }]\n",
        )
        .unwrap();
        let d = f.documents();
        let doc = crate::routes::decode(d["shop.example.com"].as_bytes()).expect("valid");
        assert_eq!(doc.id, "shop");
    }

    #[test]
    fn rejects_unknown_sections() {
        assert!(serde_yaml::from_str::<RoutesFile>("frontend: {}").is_err());
    }
}

//! The Kubernetes API calls the syncer makes: the source of truth for its
//! RBAC (`syncer/rbac.yaml` and the chart must grant exactly these; a test
//! checks the YAML against this table).

/// (API group, resource, verbs).
pub const API_CALLS: &[(&str, &str, &[&str])] = &[
    ("networking.k8s.io", "ingressclasses", &["list", "watch"]),
    ("networking.k8s.io", "ingresses", &["list", "watch"]),
    ("networking.k8s.io", "ingresses/status", &["patch"]),
    ("", "services", &["list", "watch"]),
    ("discovery.k8s.io", "endpointslices", &["list", "watch"]),
    // Only the TLS Secrets named by Ingresses of our class, one by one.
    ("", "secrets", &["get"]),
    ("events.k8s.io", "events", &["create", "patch"]),
    (
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update"],
    ),
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `rbac.yaml` grants exactly [`API_CALLS`].
    #[test]
    fn rbac_yaml_matches_the_table() {
        let yaml = include_str!("../rbac.yaml");
        let mut granted: Vec<(String, String, Vec<String>)> = Vec::new();
        let docs: Vec<serde_json::Value> =
            yaml.split("\n---").filter_map(serde_yaml_like).collect();
        for doc in docs {
            for rule in doc["rules"].as_array().into_iter().flatten() {
                for group in rule["apiGroups"].as_array().into_iter().flatten() {
                    for res in rule["resources"].as_array().into_iter().flatten() {
                        let verbs = rule["verbs"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect();
                        granted.push((
                            group.as_str().unwrap_or_default().to_owned(),
                            res.as_str().unwrap_or_default().to_owned(),
                            verbs,
                        ));
                    }
                }
            }
        }
        granted.sort();
        let mut want: Vec<(String, String, Vec<String>)> = API_CALLS
            .iter()
            .map(|(g, r, v)| {
                (
                    (*g).to_owned(),
                    (*r).to_owned(),
                    v.iter().map(|s| (*s).to_owned()).collect(),
                )
            })
            .collect();
        want.sort();
        assert_eq!(granted, want);
    }

    /// The YAML file is written in the JSON-compatible flow style for its
    /// rules, so each document's `rules:` block parses as JSON.
    fn serde_yaml_like(doc: &str) -> Option<serde_json::Value> {
        let start = doc.find("rules:")?;
        let json = doc[start + "rules:".len()..].trim();
        let rules: serde_json::Value = serde_json::from_str(json).ok()?;
        Some(serde_json::json!({ "rules": rules }))
    }
}

//! Merging Prometheus text expositions: the master's own families, then
//! every worker's, each sample labelled `worker="<slot>"`, each family's
//! `# HELP`/`# TYPE` once and its samples contiguous (as the text format
//! requires).

/// One metric family of a text exposition, in order of appearance.
#[derive(Debug, Default)]
struct Family {
    name: String,
    /// `# HELP` and `# TYPE` lines.
    meta: Vec<String>,
    samples: Vec<String>,
}

/// Families every process exports of itself (`process_cpu_seconds_total`,
/// ...): the workers' samples join the master's, so that a sum over a pod
/// counts every process of it.
const PER_PROCESS: &str = "process_";

/// `master` unchanged (but for the workers' samples of [`PER_PROCESS`]
/// families), then the families of `workers` (slot, exposition) in order of
/// first appearance, skipping the other families the master exports itself
/// and those named in `skip`.
pub fn merge(master: &str, workers: &[(usize, String)], skip: &[&str]) -> String {
    let mut master_families = parse(master);
    let mut merged: Vec<Family> = Vec::new();
    for (slot, text) in workers {
        for family in parse(text) {
            if skip.contains(&family.name.as_str()) {
                continue;
            }
            let labelled = family.samples.iter().map(|s| with_worker(s, *slot));
            if let Some(own) = master_families.iter_mut().find(|f| f.name == family.name) {
                if family.name.starts_with(PER_PROCESS) {
                    own.samples.extend(labelled);
                }
                continue;
            }
            match merged.iter_mut().find(|f| f.name == family.name) {
                Some(existing) => existing.samples.extend(labelled),
                None => merged.push(Family {
                    samples: labelled.collect(),
                    ..family
                }),
            }
        }
    }
    let mut out = String::with_capacity(master.len() + workers.len() * 16 * 1024);
    for f in master_families.iter().chain(&merged) {
        for line in f.meta.iter().chain(&f.samples) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The families of a text exposition. A `# HELP` or `# TYPE` line names
/// the family its following samples belong to.
fn parse(text: &str) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let meta_name = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .and_then(|rest| rest.split_whitespace().next());
        match meta_name {
            Some(name) => {
                if families.last().is_none_or(|f| f.name != name) {
                    families.push(Family {
                        name: name.to_owned(),
                        ..Family::default()
                    });
                }
                if let Some(f) = families.last_mut() {
                    f.meta.push(line.to_owned());
                }
            }
            None if line.starts_with('#') => {}
            None => match families.last_mut() {
                Some(f) => f.samples.push(line.to_owned()),
                None => families.push(Family {
                    name: sample_name(line).to_owned(),
                    meta: Vec::new(),
                    samples: vec![line.to_owned()],
                }),
            },
        }
    }
    families
}

fn sample_name(line: &str) -> &str {
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    &line[..end]
}

/// A sample line with `worker="<slot>"` as its first label.
fn with_worker(sample: &str, slot: usize) -> String {
    let name = sample_name(sample);
    let rest = &sample[name.len()..];
    match rest.strip_prefix('{') {
        Some(labels) if labels.starts_with('}') => format!("{name}{{worker=\"{slot}\"{labels}"),
        Some(labels) => format!("{name}{{worker=\"{slot}\",{labels}"),
        None => format!("{name}{{worker=\"{slot}\"}}{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "# HELP hipache_worker_restarts_total Restarts.\n# TYPE hipache_worker_restarts_total counter\nhipache_worker_restarts_total 2\n";

    fn worker(requests: u32) -> String {
        format!(
            "# HELP hipache_requests_total Requests.\n# TYPE hipache_requests_total counter\n\
             hipache_requests_total{{class=\"2xx\",method=\"GET\"}} {requests}\n\
             # HELP hipache_requests_in_flight In flight.\n# TYPE hipache_requests_in_flight gauge\n\
             hipache_requests_in_flight 0\n\
             # HELP hipache_worker_restarts_total Restarts.\n# TYPE hipache_worker_restarts_total counter\n\
             hipache_worker_restarts_total 0\n"
        )
    }

    #[test]
    fn labels_samples_and_keeps_families_contiguous() {
        let out = merge(MASTER, &[(0, worker(3)), (1, worker(5))], &[]);
        let expected = "# HELP hipache_worker_restarts_total Restarts.\n\
# TYPE hipache_worker_restarts_total counter\n\
hipache_worker_restarts_total 2\n\
# HELP hipache_requests_total Requests.\n\
# TYPE hipache_requests_total counter\n\
hipache_requests_total{worker=\"0\",class=\"2xx\",method=\"GET\"} 3\n\
hipache_requests_total{worker=\"1\",class=\"2xx\",method=\"GET\"} 5\n\
# HELP hipache_requests_in_flight In flight.\n\
# TYPE hipache_requests_in_flight gauge\n\
hipache_requests_in_flight{worker=\"0\"} 0\n\
hipache_requests_in_flight{worker=\"1\"} 0\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn process_families_of_master_and_workers_are_one_family() {
        let fds = |n: u32| {
            format!("# HELP process_open_fds Open fds.\n# TYPE process_open_fds gauge\nprocess_open_fds {n}\n")
        };
        let out = merge(&fds(7), &[(0, fds(20)), (1, fds(30))], &[]);
        assert_eq!(
            out,
            "# HELP process_open_fds Open fds.\n# TYPE process_open_fds gauge\n\
             process_open_fds 7\nprocess_open_fds{worker=\"0\"} 20\nprocess_open_fds{worker=\"1\"} 30\n"
        );
    }

    #[test]
    fn skips_named_families_and_handles_empty_label_sets() {
        let out = merge("", &[(2, worker(1))], &["hipache_requests_in_flight"]);
        assert!(!out.contains("in_flight"));
        assert!(out.contains("hipache_worker_restarts_total{worker=\"2\"} 0"));
        assert_eq!(with_worker("x{} 1", 0), "x{worker=\"0\"} 1");
        assert_eq!(
            with_worker("x_bucket{le=\"+Inf\"} 4", 1),
            "x_bucket{worker=\"1\",le=\"+Inf\"} 4"
        );
    }
}

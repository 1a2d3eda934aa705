//! Upstream: choosing a backend (uniformly for a list, by weight for a
//! route document's rule), the pooled connections to backends, and the
//! PROXY protocol header a rule may send them ([`proxy_header`]).

pub mod affinity;
pub mod pool;
pub mod proxy_header;

use hipache_schema::routes::weights;
use hipache_schema::BackendEntry;
use rand::Rng;

use crate::error::ProxyError;
use crate::routing::{Route, Served, Table};

pub use affinity::Pin;
pub use pool::{Pool, PoolConfig};

/// Picks the backend for an attempt among those not marked dead and not
/// already tried by this request: for a list, uniformly at random among
/// its group's valid backends; for a document's rule, the one its affinity
/// `pin` keeps, else at random in proportion to the weights, invalid
/// backends included (their share answers 500). No allocation: count,
/// draw, then walk to the drawn one.
pub fn choose<'a>(
    route: &'a Route,
    tried: &[usize],
    pin: Option<&Pin>,
) -> Option<&'a BackendEntry> {
    let open = |b: &BackendEntry| !route.is_dead(b.position) && !tried.contains(&b.position);
    match (&route.table, &route.served, route.rule()) {
        (Table::List(f), Served::Group(g), _) => {
            let group = || f.group(g.as_ref()).filter(|b| b.url.is_ok() && open(b));
            let n = group().count();
            if n == 0 {
                return None;
            }
            let pick = rand::rng().random_range(0..n);
            group().nth(pick)
        }
        (_, _, Some((doc, rule, _))) => {
            if let Some(b) = pin.and_then(|p| p.pick(doc.rule_backends(rule), open)) {
                return Some(b);
            }
            let backends = doc.rule_backends(rule).map(|(b, w)| (w, open(b)));
            let i = weights::draw(backends, |n| rand::rng().random_range(0..n))?;
            doc.rule_backends(rule).nth(i).map(|(b, _)| b)
        }
        _ => None,
    }
}

/// Why [`choose`] found nothing on a first attempt: a rule with no backend
/// that has a weight is Gateway API's 500; otherwise every backend is dead
/// or invalid (502).
pub fn nothing_to_draw(route: &Route) -> ProxyError {
    match route.rule() {
        Some((doc, rule, _)) if doc.rule_backends(rule).all(|(_, w)| w == 0) => {
            ProxyError::InvalidBackend
        }
        _ => ProxyError::NoBackend,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hipache_schema::Frontend;
    use std::sync::Arc;

    fn route(list: &[&str], dead: &[usize]) -> Route {
        Route {
            frontend_host: "h".into(),
            table: Table::List(Arc::new(Frontend::decode(list).expect("list"))),
            served: Served::Group(None),
            dead: dead.to_vec(),
        }
    }

    fn rule_route(json: &str, dead: &[usize]) -> Route {
        let doc = hipache_schema::routes::decode(json.as_bytes()).expect("document");
        Route {
            frontend_host: "h".into(),
            table: Table::Document(Arc::new(doc)),
            served: Served::Rule(hipache_schema::routes::Selected {
                rule: 0,
                matched: 0,
            }),
            dead: dead.to_vec(),
        }
    }

    #[test]
    fn rules_draw_by_weight_skipping_dead_and_tried() {
        let r = rule_route(
            r#"{"id":"d","rules":[{"backends":[{"url":"http://a","weight":3},{"invalid":"gone","weight":1},{"url":"http://c","weight":0}]}]}"#,
            &[],
        );
        let mut seen = [0usize; 3];
        for _ in 0..4000 {
            seen[choose(&r, &[], None).expect("backend").position] += 1;
        }
        assert_eq!(seen[2], 0, "weight 0 is never drawn");
        assert!((2800..3200).contains(&seen[0]), "{seen:?}");
        assert_eq!(choose(&r, &[0], None).expect("backend").position, 1);
        assert!(choose(&r, &[0, 1], None).is_none());
        let dead = rule_route(
            r#"{"id":"d","rules":[{"backends":[{"url":"http://a"}]}]}"#,
            &[0],
        );
        assert!(choose(&dead, &[], None).is_none());
        assert_eq!(nothing_to_draw(&dead).status(), 502);
        let zero = rule_route(
            r#"{"id":"d","rules":[{"backends":[{"url":"http://a","weight":0}]}]}"#,
            &[],
        );
        assert_eq!(nothing_to_draw(&zero).status(), 500);
        let none = rule_route(r#"{"id":"d","rules":[{}]}"#, &[]);
        assert_eq!(nothing_to_draw(&none).status(), 500);
    }

    #[test]
    fn skips_dead_invalid_and_tried() {
        let r = route(&["id", "http://a", "bad", "http://c", "http://d"], &[0]);
        for _ in 0..50 {
            let b = choose(&r, &[3], None).expect("live backend");
            assert_eq!(b.position, 2);
        }
        assert!(choose(&r, &[2, 3], None).is_none());
    }

    #[test]
    fn uses_every_live_backend() {
        let r = route(&["id", "http://a", "http://b", "http://c"], &[]);
        let mut seen = [0usize; 3];
        for _ in 0..300 {
            seen[choose(&r, &[], None).expect("backend").position] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}

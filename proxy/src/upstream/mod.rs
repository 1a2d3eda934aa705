//! Upstream: choosing a backend and the pooled connections to backends.

pub mod pool;

use hipache_schema::BackendEntry;
use rand::Rng;

use crate::routing::Route;

pub use pool::{Pool, PoolConfig};

/// Picks a backend uniformly at random among the route's group that is
/// valid, not marked dead and not already tried by this request. No
/// allocation: count, draw, then walk to the drawn one.
pub fn choose<'a>(route: &'a Route, tried: &[usize]) -> Option<&'a BackendEntry> {
    let live = |b: &&BackendEntry| {
        b.url.is_ok() && !route.is_dead(b.position) && !tried.contains(&b.position)
    };
    let group = || route.frontend.group(route.group.as_ref()).filter(live);
    let n = group().count();
    if n == 0 {
        return None;
    }
    let pick = rand::rng().random_range(0..n);
    group().nth(pick)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hipache_schema::Frontend;
    use std::sync::Arc;

    fn route(list: &[&str], dead: &[usize]) -> Route {
        Route {
            frontend_host: "h".into(),
            frontend: Arc::new(Frontend::decode(list).expect("list")),
            group: None,
            dead: dead.to_vec(),
        }
    }

    #[test]
    fn skips_dead_invalid_and_tried() {
        let r = route(&["id", "http://a", "bad", "http://c", "http://d"], &[0]);
        for _ in 0..50 {
            let b = choose(&r, &[3]).expect("live backend");
            assert_eq!(b.position, 2);
        }
        assert!(choose(&r, &[2, 3]).is_none());
    }

    #[test]
    fn uses_every_live_backend() {
        let r = route(&["id", "http://a", "http://b", "http://c"], &[]);
        let mut seen = [0usize; 3];
        for _ in 0..300 {
            seen[choose(&r, &[]).expect("backend").position] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}

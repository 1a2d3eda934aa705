//! The page itself: HTML written by hand from the [`super::view`] data,
//! every value escaped, with an inline style and an inline script that
//! polls the JSON endpoints every 2 s (rates come from successive polls).

use std::fmt::Write as _;

use hipache_schema::status_page::escape_html as escape;

use super::view::{Backend, Frontend, Overview, RuleView, Search};

/// `text` as a query-string value.
fn query_value(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em;margin:0}h2{font-size:1.15em;margin-top:1.5em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#f3f3f3}.ok{color:#070}.bad{color:#b00;font-weight:bold}.dead td{background:#fde8e8}\
.muted{color:#777}code{font-size:.95em}header{display:flex;gap:1em;align-items:baseline}\
input[type=search]{width:22em}ol.rules li{margin-bottom:.6em}";

/// The whole page: the overview, a search's results and a host's detail
/// when asked.
pub fn page(overview: &Overview, search: Option<&Search>, frontend: Option<&Frontend>) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <title>hipache status</title><style>{STYLE}</style></head><body>\
         <header><h1>hipache status</h1><span id=answered-by class=muted>answered by {}</span>\
         <span id=updated class=muted>rendered by the server</span></header>",
        escape(&overview.answered_by)
    );
    routes_section(&mut h, overview);
    search_section(&mut h, search);
    if let Some(f) = frontend {
        frontend_section(&mut h, f);
    }
    certificates_section(&mut h, overview);
    let _ = write!(h, "<script>{SCRIPT}</script></body></html>");
    h
}

fn routes_section(h: &mut String, o: &Overview) {
    let r = &o.routes;
    let (class, state) = if r.connected {
        ("ok", "connected")
    } else {
        ("bad", "unreachable")
    };
    let _ = write!(
        h,
        "<h2>Routes</h2><table id=routes><tr><th>driver</th><td>{} <code>{}</code></td></tr>\
         <tr><th>connection</th><td id=redis-state class={class}>{}</td></tr>\
         <tr><th>route cache</th><td><span id=cache-mode>{}</span>, <span id=cache-entries>{}</span> hosts</td></tr>\
         <tr><th>staleness</th><td><span id=staleness>{}</span> s</td></tr>\
         <tr><th>backends with statistics</th><td><span id=backends-tracked>{}</span> (at most {})</td></tr></table>",
        r.driver,
        escape(&r.source),
        if r.driver == "redis" {
            format!("Redis {state}")
        } else {
            "routes file loaded".to_owned()
        },
        escape(&r.cache_mode),
        r.cache_entries,
        r.staleness_seconds,
        o.backends_tracked,
        o.backends_cap,
    );
}

fn search_section(h: &mut String, search: Option<&Search>) {
    let q = search.map(|s| s.query.as_str()).unwrap_or("");
    let _ = write!(
        h,
        "<h2>Frontends</h2><form method=get action=/status id=search>\
         <input type=search name=q placeholder=\"host contains…\" value=\"{}\" autofocus> <button>Search</button></form>",
        escape(q)
    );
    let Some(s) = search else {
        return;
    };
    if let Some(e) = &s.error {
        let _ = write!(h, "<p class=bad id=search-error>{}</p>", escape(e));
    }
    let _ = write!(
        h,
        "<p class=muted id=search-summary>{} host(s){} in {:.1} ms</p>\
         <table id=results><tr><th>host</th><th>identifier</th></tr>",
        s.hosts.len(),
        if s.complete {
            ""
        } else {
            " shown (more match: refine the search)"
        },
        s.elapsed_ms
    );
    for host in &s.hosts {
        let _ = write!(
            h,
            "<tr class=host-row data-host=\"{}\"><td><a href=\"/status?host={}\">{}</a></td><td>{}</td></tr>",
            escape(&host.host),
            query_value(&host.host),
            escape(&host.host),
            escape(host.identifier.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table>");
}

fn frontend_section(h: &mut String, f: &Frontend) {
    let _ = write!(
        h,
        "<section id=frontend data-host=\"{}\"><h2>Frontend <code>{}</code></h2>",
        escape(&f.host),
        escape(&f.host)
    );
    if let Some(e) = &f.error {
        let _ = write!(h, "<p class=bad id=frontend-error>{}</p>", escape(e));
    }
    if f.kind == "none" && f.error.is_none() {
        h.push_str("<p id=frontend-missing>No frontend for this host.</p>");
    }
    if let Some(id) = &f.identifier {
        let _ = write!(
            h,
            "<p>identifier <code id=identifier>{}</code>, a {}</p>",
            escape(id),
            if f.kind == "document" {
                "route document"
            } else {
                "frontend list"
            }
        );
    }
    let dead = f.backends.iter().filter(|b| b.dead).count();
    let _ = write!(
        h,
        "<p id=dead-summary>{dead} backend(s) marked dead{}</p>",
        match f.dead_ttl_seconds {
            Some(ttl) if dead > 0 => format!(", marks expire in {} s", ttl.ceil()),
            _ => String::new(),
        }
    );
    if !f.backends.is_empty() {
        h.push_str(
            "<table id=backends><tr><th>#</th><th>backend</th><th>state</th><th>in flight</th>\
             <th>requests</th><th>rate /s</th><th>errors</th><th>p50</th><th>p99</th></tr>",
        );
        for b in &f.backends {
            backend_row(h, b, f.dead_ttl_seconds);
        }
        h.push_str("</table>");
    }
    if !f.rules.is_empty() {
        h.push_str("<h2>Rules</h2><ol class=rules id=rules>");
        for r in &f.rules {
            rule_item(h, r, &f.backends);
        }
        h.push_str("</ol>");
    }
    h.push_str("</section>");
}

fn backend_row(h: &mut String, b: &Backend, ttl: Option<f64>) {
    let state = match (b.valid, b.dead) {
        (false, _) => "invalid".to_owned(),
        (true, true) => match ttl {
            Some(t) => format!("dead ({} s left)", t.ceil()),
            None => "dead".to_owned(),
        },
        (true, false) => "live".to_owned(),
    };
    let s = b.stats.unwrap_or_default();
    let ms = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{:.1} ms", v * 1000.0));
    let _ = write!(
        h,
        "<tr class=\"backend{}\" data-url=\"{}\" data-position={} data-requests={} data-failures={}>\
         <td>{}</td><td><code>{}{}</code></td><td class=\"state {}\">{}</td>\
         <td class=in-flight>{}</td><td class=requests>{}</td><td class=rate>–</td>\
         <td class=errors>–</td><td class=p50>{}</td><td class=p99>{}</td></tr>",
        if b.dead { " dead" } else { "" },
        escape(&b.url),
        b.position,
        s.requests,
        s.failures,
        b.position,
        b.path
            .as_deref()
            .map(|p| format!("{} ", escape(p)))
            .unwrap_or_default(),
        escape(&b.url),
        if b.dead || !b.valid { "bad" } else { "ok" },
        state,
        s.in_flight,
        s.requests,
        ms(s.p50),
        ms(s.p99),
    );
}

fn rule_item(h: &mut String, r: &RuleView, backends: &[Backend]) {
    h.push_str("<li class=rule>");
    if let Some(name) = &r.name {
        let _ = write!(h, "<b>{}</b><br>", escape(name));
    }
    let list = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("<code>{}</code>", escape(i)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let _ = write!(h, "matches: {}<br>", list(&r.matches));
    if !r.filters.is_empty() {
        let _ = write!(h, "filters: {}<br>", list(&r.filters));
    }
    let to: Vec<String> = r
        .backends
        .iter()
        .map(|(pos, weight)| {
            let url = backends
                .iter()
                .find(|b| b.position == *pos)
                .map_or("?", |b| b.url.as_str());
            format!("#{pos} <code>{}</code> weight {weight}", escape(url))
        })
        .collect();
    let _ = write!(
        h,
        "backends: {}",
        if to.is_empty() {
            "none".to_owned()
        } else {
            to.join(", ")
        }
    );
    if !r.settings.is_empty() {
        let _ = write!(
            h,
            "<br><span class=muted>{}</span>",
            escape(&r.settings.join("; "))
        );
    }
    h.push_str("</li>");
}

fn certificates_section(h: &mut String, o: &Overview) {
    h.push_str("<h2>Certificates</h2>");
    if o.certificates.is_empty() {
        h.push_str("<p class=muted>No certificate served (no HTTPS listener).</p>");
        return;
    }
    h.push_str("<table id=certificates><tr><th>name</th><th>expires</th><th>days left</th></tr>");
    for c in &o.certificates {
        let date = time::OffsetDateTime::from_unix_timestamp(c.not_after)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| c.not_after.to_string());
        let _ = write!(
            h,
            "<tr class=certificate data-name=\"{}\"><td>{}</td><td>{}</td><td class=\"days-left {}\">{}</td></tr>",
            escape(&c.name),
            escape(&c.name),
            date,
            if c.days_left < 14 { "bad" } else { "ok" },
            c.days_left
        );
    }
    h.push_str("</table>");
}

/// Polls every 2 s: the overview, and the shown frontend's backends (their
/// rate and error share from the difference between two polls).
const SCRIPT: &str = r#"
(function () {
  var section = document.getElementById('frontend');
  var last = {};
  var lastAt = performance.now();
  document.querySelectorAll('tr.backend').forEach(function (tr) {
    last[tr.dataset.position] = {requests: +tr.dataset.requests, failures: +tr.dataset.failures};
  });
  function set(id, v) { var e = document.getElementById(id); if (e) e.textContent = v; }
  function ms(v) { return v == null ? '\u2013' : (v * 1000).toFixed(1) + ' ms'; }
  function overview() {
    fetch('/status/api/overview').then(function (r) { return r.json(); }).then(function (o) {
      var r = o.routes;
      var e = document.getElementById('redis-state');
      if (e && r.driver === 'redis') {
        e.textContent = 'Redis ' + (r.connected ? 'connected' : 'unreachable');
        e.className = r.connected ? 'ok' : 'bad';
      }
      set('cache-mode', r.cache_mode);
      set('cache-entries', r.cache_entries);
      set('staleness', r.staleness_seconds);
      set('backends-tracked', o.backends_tracked);
      set('answered-by', 'answered by ' + o.answered_by);
      set('updated', 'updated ' + new Date().toLocaleTimeString());
    }).catch(function (e) { set('redis-state', 'status page unreachable: ' + e); });
  }
  function frontend() {
    if (!section) return;
    var host = section.dataset.host;
    fetch('/status/api/frontend?host=' + encodeURIComponent(host))
      .then(function (r) { return r.json(); }).then(function (f) {
        var now = performance.now();
        var dt = (now - lastAt) / 1000;
        lastAt = now;
        var rows = {};
        document.querySelectorAll('tr.backend').forEach(function (tr) { rows[tr.dataset.position] = tr; });
        f.backends.forEach(function (b) {
          var tr = rows[b.position];
          if (!tr) return;
          var s = b.stats || {in_flight: 0, requests: 0, failures: 0, p50: null, p99: null};
          var prev = last[b.position] || {requests: s.requests, failures: s.failures};
          var dr = s.requests - prev.requests, df = s.failures - prev.failures;
          last[b.position] = {requests: s.requests, failures: s.failures};
          var state = !b.valid ? 'invalid' : b.dead
            ? 'dead' + (f.dead_ttl_seconds != null ? ' (' + Math.ceil(f.dead_ttl_seconds) + ' s left)' : '')
            : 'live';
          var cell = tr.querySelector('.state');
          cell.textContent = state;
          cell.className = 'state ' + (b.dead || !b.valid ? 'bad' : 'ok');
          tr.className = 'backend' + (b.dead ? ' dead' : '');
          tr.querySelector('.in-flight').textContent = s.in_flight;
          tr.querySelector('.requests').textContent = s.requests;
          tr.querySelector('.rate').textContent = dt > 0 ? (dr / dt).toFixed(1) : '\u2013';
          tr.querySelector('.errors').textContent = dr > 0 ? (100 * df / dr).toFixed(0) + ' %' : '\u2013';
          tr.querySelector('.p50').textContent = ms(s.p50);
          tr.querySelector('.p99').textContent = ms(s.p99);
        });
        set('dead-summary', f.backends.filter(function (b) { return b.dead; }).length + ' backend(s) marked dead'
          + (f.dead_ttl_seconds != null ? ', marks expire in ' + Math.ceil(f.dead_ttl_seconds) + ' s' : ''));
      }).catch(function () {});
  }
  setInterval(function () { overview(); frontend(); }, 2000);
})();
"#;

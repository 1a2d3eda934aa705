//! `loadgen`: the small clients `bench/run` needs that wrk does not provide.
//!
//! - `rate`: an open-loop, fixed-rate HTTP/1.1 client (what wrk2 does):
//!   `--conns` keep-alive connections share `--rate` requests per second on a
//!   fixed schedule, and each latency is measured from the moment the request
//!   was *scheduled*, not sent, so a stall is not hidden by the client
//!   waiting for it (no coordinated omission).
//! - `idle`: opens `--conns` keep-alive connections, sends one request on
//!   each, prints `READY`, holds them idle for `--hold` seconds, then checks
//!   how many are still usable.
//! - `fresh`: route freshness. Repeatedly rewrites a backend in Redis
//!   (`LSET frontend:<host> 1 <url>`) and polls the proxy on a keep-alive
//!   connection until an answer comes from the new backend; reports the time
//!   from sending the write to receiving that answer.
//!
//! Standard library plus `libc` (epoll and timerfd for the rate client).

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        eprintln!("usage: loadgen rate|idle|fresh --key value ...");
        return ExitCode::from(2);
    };
    let args = match Args::parse(rest) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd.as_str() {
        "rate" => rate(&args),
        "idle" => idle(&args),
        "fresh" => fresh(&args),
        other => Err(format!("unknown command {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Args(HashMap<String, String>);

impl Args {
    fn parse(rest: &[String]) -> Result<Args, String> {
        let mut m = HashMap::new();
        let mut it = rest.iter();
        while let Some(k) = it.next() {
            let Some(key) = k.strip_prefix("--") else {
                return Err(format!("expected --key, got {k:?}"));
            };
            let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            m.insert(key.to_string(), v.clone());
        }
        Ok(Args(m))
    }
    fn str(&self, k: &str) -> Result<String, String> {
        self.0.get(k).cloned().ok_or_else(|| format!("--{k} is required"))
    }
    fn str_or(&self, k: &str, d: &str) -> String {
        self.0.get(k).cloned().unwrap_or_else(|| d.to_string())
    }
    fn num(&self, k: &str, d: Option<f64>) -> Result<f64, String> {
        match self.0.get(k) {
            Some(v) => v.parse().map_err(|_| format!("--{k}: not a number: {v:?}")),
            None => d.ok_or_else(|| format!("--{k} is required")),
        }
    }
    fn addr(&self, k: &str) -> Result<SocketAddr, String> {
        let s = self.str(k)?;
        s.to_socket_addrs()
            .map_err(|e| format!("--{k} {s}: {e}"))?
            .next()
            .ok_or_else(|| format!("--{k} {s}: no address"))
    }
}

/// Ask the kernel for precise wake-ups (the default timer slack is 50 µs).
fn precise_timers() {
    let _ = std::fs::write("/proc/thread-self/timerslack_ns", "1");
}

// ---------------------------------------------------------------- HTTP client

struct Response {
    status: u16,
    body: Vec<u8>,
    close: bool,
}

struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<HttpConn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(HttpConn { stream, buf: Vec::with_capacity(4096) })
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Sends `req` and reads one whole response. `keep_body` false discards
    /// the body bytes (still read off the socket).
    fn roundtrip(&mut self, req: &[u8], keep_body: bool) -> io::Result<Response> {
        self.stream.write_all(req)?;
        self.read_response(keep_body)
    }

    fn read_response(&mut self, keep_body: bool) -> io::Result<Response> {
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            if self.buf.len() > 1 << 20 {
                return Err(bad("response head too large"));
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| bad("non-UTF-8 head"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = status_line.starts_with("HTTP/1.0");
        for line in lines {
            let Some((k, v)) = line.split_once(':') else { continue };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.parse().map_err(|_| bad("bad content-length"))?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                let v = v.to_ascii_lowercase();
                if v.contains("close") {
                    close = true;
                } else if v.contains("keep-alive") {
                    close = false;
                }
            }
        }
        self.buf.drain(..head_end);
        let mut body = Vec::new();
        if chunked {
            loop {
                let line_end = loop {
                    if let Some(p) = find(&self.buf, b"\r\n") {
                        break p;
                    }
                    self.fill()?;
                };
                let size_str = std::str::from_utf8(&self.buf[..line_end]).map_err(|_| bad("chunk size"))?;
                let size_str = size_str.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_str, 16).map_err(|_| bad("chunk size"))?;
                self.buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailers, then an empty line.
                    loop {
                        let end = loop {
                            if let Some(p) = find(&self.buf, b"\r\n") {
                                break p;
                            }
                            self.fill()?;
                        };
                        self.buf.drain(..end + 2);
                        if end == 0 {
                            break;
                        }
                    }
                    break;
                }
                while self.buf.len() < size + 2 {
                    self.fill()?;
                }
                if keep_body {
                    body.extend_from_slice(&self.buf[..size]);
                }
                self.buf.drain(..size + 2);
            }
        } else if let Some(len) = length {
            let mut remaining = len;
            loop {
                let take = remaining.min(self.buf.len());
                if keep_body {
                    body.extend_from_slice(&self.buf[..take]);
                }
                self.buf.drain(..take);
                remaining -= take;
                if remaining == 0 {
                    break;
                }
                self.fill()?;
            }
        } else if status != 204 && status != 304 && !(100..200).contains(&status) {
            // Body until EOF.
            loop {
                if keep_body {
                    body.extend_from_slice(&self.buf);
                }
                self.buf.clear();
                match self.fill() {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            close = true;
        }
        Ok(Response { status, body, close })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn get_request(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hipache-bench\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------- stats

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

// ---------------------------------------------------------------- rate

/// Parses one complete response at the start of `buf`, if there is one:
/// `(bytes used, status, connection close)`.
fn parse_response(buf: &[u8]) -> Result<Option<(usize, u16, bool)>, String> {
    let Some(p) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head_end = p + 4;
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "non-UTF-8 head")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("bad status line")?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut close = status_line.starts_with("HTTP/1.0");
    for line in lines {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse().map_err(|_| "bad content-length")?);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.to_ascii_lowercase().contains("close");
        }
    }
    if chunked {
        let mut pos = head_end;
        loop {
            let Some(le) = find(&buf[pos..], b"\r\n") else { return Ok(None) };
            let size_str = std::str::from_utf8(&buf[pos..pos + le]).map_err(|_| "chunk size")?;
            let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| "chunk size")?;
            pos += le + 2;
            if size == 0 {
                // No trailers expected: the empty line.
                if buf.len() < pos + 2 {
                    return Ok(None);
                }
                return Ok(Some((pos + 2, status, close)));
            }
            if buf.len() < pos + size + 2 {
                return Ok(None);
            }
            pos += size + 2;
        }
    }
    let len = length.ok_or("response without content-length (not supported by the rate client)")?;
    if buf.len() < head_end + len {
        return Ok(None);
    }
    Ok(Some((head_end + len, status, close)))
}

struct RateConn {
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// Intended send times of requests assigned to this connection, not yet
    /// answered; the front one is in flight when `in_flight`.
    queue: std::collections::VecDeque<Instant>,
    in_flight: bool,
    sent_at: Instant,
}

fn epoll_add(ep: i32, fd: i32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
    // SAFETY: valid epoll fd and event pointer.
    if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn connect_nb(addr: SocketAddr, ep: i32, token: u64) -> io::Result<TcpStream> {
    use std::os::fd::AsRawFd;
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    epoll_add(ep, s.as_raw_fd(), token)?;
    Ok(s)
}

/// Open-loop fixed-rate client on one thread: epoll for the sockets, a
/// timerfd (nanosecond precision) for the schedule. Request j is due at
/// start + j/rate and goes to connection j % conns; a connection still busy
/// queues it, and its latency counts from when it was due.
fn rate(a: &Args) -> Result<(), String> {
    let addr = a.addr("addr")?;
    let host = a.str("host")?;
    let path = a.str_or("path", "/");
    let rate = a.num("rate", None)?;
    let duration = a.num("duration", None)?;
    let nconns = a.num("conns", Some(50.0))? as usize;
    let warmup = a.num("warmup", Some(1.0))?;
    if rate <= 0.0 || duration <= warmup || nconns == 0 {
        return Err("need --rate > 0, --duration > --warmup, --conns > 0".into());
    }
    precise_timers();
    let req = get_request(&host, &path);
    // SAFETY: plain syscalls; results checked.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    let tfd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
    if ep < 0 || tfd < 0 {
        return Err(io::Error::last_os_error().to_string());
    }
    const TIMER: u64 = u64::MAX;
    epoll_add(ep, tfd, TIMER).map_err(|e| e.to_string())?;
    let mut conns: Vec<RateConn> = Vec::with_capacity(nconns);
    for i in 0..nconns {
        let s = connect_nb(addr, ep, i as u64).map_err(|e| format!("connect: {e}"))?;
        conns.push(RateConn { stream: Some(s), buf: Vec::with_capacity(4096), queue: Default::default(), in_flight: false, sent_at: Instant::now() });
    }
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + Duration::from_secs_f64(warmup);
    let end = start + Duration::from_secs_f64(duration);
    let drain_deadline = end + Duration::from_secs(5);
    let period_ns = 1e9 / rate;
    let due = |j: u64| start + Duration::from_nanos((j as f64 * period_ns) as u64);
    let mut next_j: u64 = 0;
    let mut lat: Vec<u64> = Vec::with_capacity((rate * duration) as usize + 16);
    // From the actual send (not the schedule): what a closed-loop client sees.
    let mut service: Vec<u64> = Vec::with_capacity((rate * duration) as usize + 16);
    // Send time minus due time: the client's own lateness.
    let mut lag: Vec<u64> = Vec::with_capacity((rate * duration) as usize + 16);
    let (mut sent, mut errors, mut non2xx, mut unanswered) = (0u64, 0u64, 0u64, 0u64);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut chunk = vec![0u8; 65536];

    // Sends the front request of connection i if it is idle.
    fn pump(c: &mut RateConn, req: &[u8], sent: &mut u64, errors: &mut u64) -> bool {
        if c.in_flight || c.queue.is_empty() {
            return true;
        }
        let Some(s) = c.stream.as_mut() else { return false };
        match s.write(req) {
            Ok(n) if n == req.len() => {
                c.in_flight = true;
                c.sent_at = Instant::now();
                *sent += 1;
                true
            }
            _ => {
                *errors += 1;
                false
            }
        }
    }

    loop {
        let now = Instant::now();
        // Hand out the requests that are due.
        while now < end && due(next_j) <= now {
            let i = (next_j % nconns as u64) as usize;
            conns[i].queue.push_back(due(next_j));
            next_j += 1;
            let c = &mut conns[i];
            if !pump(c, &req, &mut sent, &mut errors) {
                c.stream = None;
            }
        }
        let pending = conns.iter().any(|c| !c.queue.is_empty());
        if now >= end && (!pending || now >= drain_deadline) {
            break;
        }
        // Reconnect broken connections (rare).
        for (i, c) in conns.iter_mut().enumerate() {
            if c.stream.is_none() {
                c.in_flight = false;
                c.buf.clear();
                match connect_nb(addr, ep, i as u64) {
                    Ok(s) => c.stream = Some(s),
                    Err(_) => {
                        errors += 1;
                        thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                }
                if !pump(c, &req, &mut sent, &mut errors) {
                    c.stream = None;
                }
            }
        }
        // Arm the timer for the next due request (or the drain deadline).
        let wake = if now < end { due(next_j).min(end) } else { drain_deadline };
        let d = wake.saturating_duration_since(Instant::now()).max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: d.as_secs() as _, tv_nsec: d.subsec_nanos() as _ },
        };
        // SAFETY: valid timerfd and pointers.
        unsafe { libc::timerfd_settime(tfd, 0, &spec, std::ptr::null_mut()) };
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 1000) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("epoll_wait: {e}"));
        }
        for ev in &events[..n as usize] {
            let token = ev.u64;
            if token == TIMER {
                let mut b = [0u8; 8];
                // SAFETY: reading 8 bytes into an 8-byte buffer.
                unsafe { libc::read(tfd, b.as_mut_ptr().cast(), 8) };
                continue;
            }
            let c = &mut conns[token as usize];
            let Some(s) = c.stream.as_mut() else { continue };
            let mut broken = false;
            loop {
                match s.read(&mut chunk) {
                    Ok(0) => {
                        broken = true;
                        break;
                    }
                    Ok(k) => c.buf.extend_from_slice(&chunk[..k]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
            let done = Instant::now();
            let mut close = false;
            loop {
                match parse_response(&c.buf) {
                    Ok(Some((used, status, cl))) => {
                        c.buf.drain(..used);
                        if let Some(intended) = c.queue.pop_front() {
                            if intended >= measure_from {
                                lat.push((done - intended).as_nanos() as u64);
                                service.push((done - c.sent_at).as_nanos() as u64);
                                lag.push((c.sent_at - intended).as_nanos() as u64);
                            }
                        }
                        c.in_flight = false;
                        if !(200..400).contains(&status) {
                            non2xx += 1;
                        }
                        if cl {
                            close = true;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
            if broken && c.in_flight {
                errors += 1;
                c.in_flight = false;
                c.queue.pop_front();
            }
            if broken || close {
                c.stream = None; // dropped: closed and removed from epoll
                c.buf.clear();
            } else if !pump(c, &req, &mut sent, &mut errors) {
                c.stream = None;
            }
        }
    }
    for c in &conns {
        unanswered += c.queue.len() as u64;
    }
    // SAFETY: closing fds we own.
    unsafe {
        libc::close(tfd);
        libc::close(ep);
    }
    lat.sort_unstable();
    service.sort_unstable();
    lag.sort_unstable();
    let measured = duration - warmup;
    let mean = if lat.is_empty() { 0 } else { lat.iter().sum::<u64>() / lat.len() as u64 };
    println!(
        "target_rps={rate:.0} achieved_rps={:.0} sent={sent} measured={} errors={errors} non2xx={non2xx} unanswered={unanswered} mean_us={} p50_us={} p90_us={} p99_us={} p999_us={} max_us={} service_p50_us={} service_p99_us={} send_lag_p50_us={} send_lag_p99_us={}",
        lat.len() as f64 / measured,
        lat.len(),
        us(mean),
        us(percentile(&lat, 50.0)),
        us(percentile(&lat, 90.0)),
        us(percentile(&lat, 99.0)),
        us(percentile(&lat, 99.9)),
        us(lat.last().copied().unwrap_or(0)),
        us(percentile(&service, 50.0)),
        us(percentile(&service, 99.0)),
        us(percentile(&lag, 50.0)),
        us(percentile(&lag, 99.0)),
    );
    Ok(())
}

// ---------------------------------------------------------------- idle

fn idle(a: &Args) -> Result<(), String> {
    let addr = a.addr("addr")?;
    let host = a.str("host")?;
    let n = a.num("conns", None)? as usize;
    let hold = a.num("hold", None)?;
    let req = get_request(&host, "/");
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0;
    let t0 = Instant::now();
    for _ in 0..n {
        match HttpConn::connect(addr, Duration::from_secs(5)).and_then(|mut c| {
            let r = c.roundtrip(&req, false)?;
            if r.status != 200 || r.close {
                return Err(bad("not a keep-alive 200"));
            }
            Ok(c)
        }) {
            Ok(c) => conns.push(c),
            Err(_) => failed += 1,
        }
    }
    println!("READY opened={} failed={failed} open_s={:.2}", conns.len(), t0.elapsed().as_secs_f64());
    io::stdout().flush().map_err(|e| e.to_string())?;
    thread::sleep(Duration::from_secs_f64(hold));
    let mut alive = 0;
    for c in conns.iter_mut() {
        if matches!(c.roundtrip(&req, false), Ok(r) if r.status == 200) {
            alive += 1;
        }
    }
    println!("DONE opened={} failed={failed} alive_after_hold={alive}", conns.len());
    Ok(())
}

// ---------------------------------------------------------------- fresh

struct Redis {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Redis {
    fn connect(addr: SocketAddr) -> io::Result<Redis> {
        let w = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        w.set_nodelay(true)?;
        w.set_read_timeout(Some(Duration::from_secs(5)))?;
        let r = BufReader::new(w.try_clone()?);
        Ok(Redis { w, r })
    }

    /// Sends a command and reads a one-line reply (`+OK`, `:n`); `-ERR` is
    /// an error.
    fn cmd(&mut self, parts: &[&str]) -> io::Result<String> {
        let mut out = format!("*{}\r\n", parts.len());
        for p in parts {
            out.push_str(&format!("${}\r\n{}\r\n", p.len(), p));
        }
        self.w.write_all(out.as_bytes())?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        if line.starts_with('-') || line.is_empty() {
            return Err(bad(&format!("redis: {}", line.trim())));
        }
        Ok(line.trim().to_string())
    }
}

fn fresh(a: &Args) -> Result<(), String> {
    let redis_addr = a.addr("redis")?;
    let proxy = a.addr("proxy")?;
    let host = a.str("host")?;
    let prefix = a.str_or("prefix", "");
    let urls = [a.str("url-a")?, a.str("url-b")?];
    let markers = [a.str("marker-a")?, a.str("marker-b")?];
    let trials = a.num("trials", Some(500.0))? as usize;
    let timeout = Duration::from_secs_f64(a.num("timeout-ms", Some(1000.0))? / 1000.0);
    let key = format!("{prefix}frontend:{host}");
    let req = get_request(&host, "/");
    let mut redis = Redis::connect(redis_addr).map_err(|e| e.to_string())?;
    redis.cmd(&["DEL", &key]).map_err(|e| e.to_string())?;
    redis.cmd(&["RPUSH", &key, "bench-fresh", &urls[0]]).map_err(|e| e.to_string())?;
    let mut conn = HttpConn::connect(proxy, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let get = |conn: &mut HttpConn| -> Result<Option<usize>, String> {
        let r = match conn.roundtrip(&req, true) {
            Ok(r) => r,
            Err(e) => {
                *conn = HttpConn::connect(proxy, Duration::from_secs(5)).map_err(|e| e.to_string())?;
                return Err(e.to_string());
            }
        };
        if r.close {
            *conn = HttpConn::connect(proxy, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        }
        let body = String::from_utf8_lossy(&r.body);
        Ok(markers.iter().position(|m| body.contains(m.as_str())))
    };
    // Wait for the proxy to route to backend a.
    let t = Instant::now();
    loop {
        if let Ok(Some(0)) = get(&mut conn) {
            break;
        }
        if t.elapsed() > Duration::from_secs(5) {
            return Err("the proxy never routed to backend a".into());
        }
        thread::sleep(Duration::from_millis(10));
    }
    let mut cur = 0usize;
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut fresh_ns = Vec::with_capacity(trials);
    let mut ack_ns = Vec::with_capacity(trials);
    let mut rtt_ns = Vec::with_capacity(trials);
    let mut first_poll_fresh = 0usize;
    let mut max_polls = 0usize;
    let mut timeouts = 0usize;
    let mut stale_after_settle = 0usize;
    for _ in 0..trials {
        // Settle: the proxy answers from the current backend (and, with a
        // cache, has it cached).
        for _ in 0..3 {
            let t = Instant::now();
            let m = get(&mut conn)?;
            rtt_ns.push(t.elapsed().as_nanos() as u64);
            if m != Some(cur) {
                stale_after_settle += 1;
            }
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        thread::sleep(Duration::from_micros(500 + rng % 1500));
        let next = 1 - cur;
        let t0 = Instant::now();
        redis.cmd(&["LSET", &key, "1", &urls[next]]).map_err(|e| e.to_string())?;
        ack_ns.push(t0.elapsed().as_nanos() as u64);
        let mut polls = 0;
        loop {
            polls += 1;
            let m = get(&mut conn)?;
            if m == Some(next) {
                fresh_ns.push(t0.elapsed().as_nanos() as u64);
                break;
            }
            if t0.elapsed() > timeout {
                timeouts += 1;
                fresh_ns.push(t0.elapsed().as_nanos() as u64);
                break;
            }
        }
        if polls == 1 {
            first_poll_fresh += 1;
        }
        max_polls = max_polls.max(polls);
        cur = next;
    }
    let _ = redis.cmd(&["DEL", &key]);
    fresh_ns.sort_unstable();
    ack_ns.sort_unstable();
    rtt_ns.sort_unstable();
    println!(
        "trials={trials} timeouts={timeouts} p50_us={} p90_us={} p99_us={} max_us={} first_poll_fresh_pct={:.1} max_polls={max_polls} write_ack_p50_us={} request_rtt_p50_us={} stale_after_settle={stale_after_settle}",
        us(percentile(&fresh_ns, 50.0)),
        us(percentile(&fresh_ns, 90.0)),
        us(percentile(&fresh_ns, 99.0)),
        us(fresh_ns.last().copied().unwrap_or(0)),
        100.0 * first_poll_fresh as f64 / trials.max(1) as f64,
        us(percentile(&ack_ns, 50.0)),
        us(percentile(&rtt_ns, 50.0)),
    );
    Ok(())
}

//! Load generator for `npm run bench`.
//!
//! Each connection is a thread with one keep-alive HTTP/1.1 connection. It
//! sends realistic Bandwidth callbacks (a `message-delivered` event with a
//! fresh message id each time; with `--statuses`, `message-sending`,
//! `message-sent` and `message-delivered` for each message in turn, so two
//! callbacks in three update a stored message) or a fixed body, and waits
//! for each answer,
//! so the count of 2xx answers is exact: nothing is in flight when it stops.
//! With `--rate`, sends follow a fixed schedule and latency is measured from
//! the scheduled time (no coordinated omission).
//!
//! Output: one JSON line on stdout; with `--acked-file`, the ids of the
//! acknowledged callbacks, so the bench can check them one by one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Args {
    addr: String,
    path: String,
    auth: Option<String>,
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
    total: Option<u64>,
    body: Option<String>,
    prefix: String,
    /// Writes the id of every acknowledged (2xx) callback here, one per line.
    acked_file: Option<String>,
    /// Three status callbacks per message instead of one fresh message each.
    statuses: bool,
    /// Ids as Bandwidth makes them, beginning with the millisecond the
    /// message was made (the shard layout in force then places it).
    timed_ids: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:8787".into(),
        path: "/callbacks/bandwidth".into(),
        auth: None,
        connections: 32,
        duration: Duration::from_secs(10),
        rate: None,
        total: None,
        body: None,
        prefix: format!("bench-{}", std::process::id()),
        acked_file: None,
        statuses: false,
        timed_ids: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val(),
            "--path" => a.path = val(),
            "--auth" => a.auth = Some(val()),
            "--connections" => a.connections = val().parse().expect("--connections"),
            "--duration" => a.duration = Duration::from_secs_f64(val().parse().expect("--duration")),
            "--rate" => a.rate = Some(val().parse().expect("--rate")),
            "--total" => a.total = Some(val().parse().expect("--total")),
            "--body" => a.body = Some(val()),
            "--prefix" => a.prefix = val(),
            "--acked-file" => a.acked_file = Some(val()),
            "--statuses" => a.statuses = true,
            "--timed-ids" => a.timed_ids = true,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// The status callbacks of one message, in the order Bandwidth sends them.
const STATUSES: [&str; 3] = ["message-sending", "message-sent", "message-delivered"];

/// One callback: status `STATUSES[step]` of message `id`, whose own time
/// second is `n % 60`.
fn callback_body(step: usize, id: &str, n: u64) -> String {
    let (kind, second) = (STATUSES[step], 7 + step);
    format!(
        r#"[{{"type":"{kind}","time":"2026-11-20T15:04:{second:02}.450Z","description":"ok","to":"+15552220001","message":{{"id":"{id}","owner":"+15551110000","applicationId":"93de2206-9669-4e07-948d-329f4b722ee2","time":"2026-11-20T15:04:{:02}.000Z","segmentCount":1,"direction":"out","to":["+15552220001"],"from":"+15551110000","text":"","tag":"bench","priority":"default"}},"carrierName":"Example Wireless"}}]"#,
        n % 60
    )
}

#[derive(Default)]
struct Tally {
    ok: u64,
    non2xx: u64,
    errors: u64,
    latencies_us: Vec<u32>,
    acked: Vec<String>,
}

/// Reads one HTTP/1.1 response; returns its status. Supports Content-Length
/// and bodiless answers (204), which is all the bench targets send.
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
    }
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut len = 0usize;
    let mut chunked = false;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            let mut buf = vec![0; size + 2];
            r.read_exact(&mut buf)?;
            if size == 0 {
                break;
            }
        }
    } else {
        let mut buf = vec![0; len];
        r.read_exact(&mut buf)?;
    }
    Ok(status)
}

fn run_connection(a: &Args, idx: usize, start: Instant, per_conn_total: Option<u64>) -> Tally {
    let mut tally = Tally::default();
    let connect = || -> std::io::Result<(TcpStream, BufReader<TcpStream>)> {
        let s = TcpStream::connect(&a.addr)?;
        s.set_nodelay(true)?;
        let r = BufReader::new(s.try_clone()?);
        Ok((s, r))
    };
    let Ok((mut w, mut r)) = connect() else {
        tally.errors += 1;
        return tally;
    };
    let interval = a.rate.map(|rate| Duration::from_secs_f64(a.connections as f64 / rate));
    let mut n: u64 = 0;
    let mut made_ms: u128 = 0;
    loop {
        if per_conn_total.is_some_and(|t| n >= t) || (per_conn_total.is_none() && start.elapsed() >= a.duration) {
            break;
        }
        let scheduled = match interval {
            Some(iv) => {
                // Stagger connections; send at the schedule, never early.
                let at = start + iv.mul_f64(n as f64 + idx as f64 / a.connections as f64);
                if at >= start + a.duration {
                    break;
                }
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                at
            }
            None => Instant::now(),
        };
        let (id, step, seq) = if a.statuses {
            (format!("{}-{idx}-{}", a.prefix, n / 3), (n % 3) as usize, n / 3)
        } else {
            (format!("{}-{idx}-{n}", a.prefix), 2, n)
        };
        if a.timed_ids && (!a.statuses || step == 0) {
            made_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        }
        let id = if a.timed_ids { format!("{made_ms}{id}") } else { id };
        let body = a.body.clone().unwrap_or_else(|| callback_body(step, &id, seq));
        let auth = a.auth.as_ref().map(|v| format!("Authorization: {v}\r\n")).unwrap_or_default();
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            a.path,
            body.len()
        );
        n += 1;
        let outcome = w.write_all(req.as_bytes()).and_then(|_| read_response(&mut r));
        match outcome {
            Ok(status) => {
                tally.latencies_us.push(scheduled.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if (200..300).contains(&status) {
                    tally.ok += 1;
                    if a.acked_file.is_some() {
                        tally.acked.push(id);
                    }
                } else {
                    tally.non2xx += 1;
                }
            }
            Err(_) => {
                tally.errors += 1;
                match connect() {
                    Ok((nw, nr)) => {
                        w = nw;
                        r = nr;
                    }
                    Err(_) => break,
                }
            }
        }
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let a = parse_args();
    let start = Instant::now();
    let per_conn = a.total.map(|t| t.div_ceil(a.connections as u64));
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.connections)
            .map(|i| {
                let a = &a;
                s.spawn(move || run_connection(a, i, start, per_conn))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat: Vec<u32> = tallies.iter().flat_map(|t| t.latencies_us.iter().copied()).collect();
    lat.sort_unstable();
    let ok: u64 = tallies.iter().map(|t| t.ok).sum();
    let non2xx: u64 = tallies.iter().map(|t| t.non2xx).sum();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    if let Some(path) = &a.acked_file {
        let ids: Vec<&str> = tallies.iter().flat_map(|t| t.acked.iter().map(String::as_str)).collect();
        std::fs::write(path, ids.join("\n")).expect("--acked-file: could not write");
    }
    println!(
        r#"{{"ok":{ok},"non2xx":{non2xx},"errors":{errors},"seconds":{elapsed:.3},"rps":{:.1},"p50_ms":{:.3},"p99_ms":{:.3},"p999_ms":{:.3},"max_ms":{:.3}}}"#,
        (ok + non2xx) as f64 / elapsed,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        percentile(&lat, 99.9),
        lat.last().copied().unwrap_or(0) as f64 / 1000.0
    );
}

//! The `stats` plugin over real sockets: counters summed over two workers
//! are exact (every response counted once, by Location, status class and
//! the plugin that answered), the latency histograms are cumulative and
//! end with the count, counts survive a reload and a worker killed, the
//! JSON status parses with its fields, and only allowed clients see
//! either page.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

const CONF: &str = "Workers 2\n\
Plugin logging/warn\n\
LogLevel LOGINFO\n\
Plugin stats\n\
StatsPath /status\n\
MetricsPath /metrics\n\
{extra}\n\
<Server>\n\
    Listen 127.0.0.1:0\n\
    ServerName www.test\n\
    DocumentRoot {dir}/www\n\
    Plugin uri_to_file\n\
    Plugin serve_file\n\
    <Location /app>\n\
    </Location>\n\
</Server>\n";

fn start(extra: &str) -> Axkit {
    Axkit::start_with(&CONF.replace("{extra}", extra), &[], |d| {
        d.write("www/a.txt", "hello\n");
        d.write("www/app/b.txt", "app\n");
    })
}

/// The value of the sample `name{labels}` (exactly), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn requests(text: &str, location: &str, class: &str) -> f64 {
    let series = format!(
        "axkit_requests_total{{server=\"www.test\",location=\"{location}\",class=\"{class}\"}}"
    );
    sample(text, &series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

fn plugin(text: &str, name: &str) -> f64 {
    sample(
        text,
        &format!("axkit_plugin_responses_total{{plugin=\"{name}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Every bucket of `location`'s histogram, in order, and its count.
fn histogram(text: &str, location: &str) -> (Vec<f64>, f64) {
    let prefix = format!(
        "axkit_request_duration_seconds_bucket{{server=\"www.test\",location=\"{location}\",le="
    );
    let buckets = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| rest.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    let count = sample(
        text,
        &format!(
            "axkit_request_duration_seconds_count{{server=\"www.test\",location=\"{location}\"}}"
        ),
    )
    .unwrap();
    (buckets, count)
}

fn metrics(srv: &Axkit) -> String {
    let r = srv.get("/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text()
}

fn status_json(srv: &Axkit) -> serde_json::Value {
    let r = get(srv, "/status", "Accept: application/json\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("the status is JSON")
}

const BAD: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";

#[test]
fn counters_are_exact_across_workers_by_location_class_and_plugin() {
    let srv = start("");
    for _ in 0..30 {
        assert_eq!(srv.get("/a.txt").status, 200);
    }
    for _ in 0..5 {
        assert_eq!(srv.get("/app/b.txt").status, 200);
    }
    for _ in 0..7 {
        assert_eq!(srv.get("/missing").status, 404);
    }
    // Refused before any hook: counted all the same, answered by the core.
    for _ in 0..3 {
        let (bytes, _) = srv.raw(BAD);
        assert_eq!(parse_response(&bytes).unwrap().status, 400);
    }
    for _ in 0..2 {
        assert_eq!(request(&srv, "POST", "/metrics", "").status, 405);
    }

    let text = metrics(&srv);
    assert_eq!(requests(&text, "/", "2xx"), 30.0, "{text}");
    assert_eq!(requests(&text, "/", "4xx"), 12.0, "{text}");
    assert_eq!(requests(&text, "/app", "2xx"), 5.0, "{text}");
    for class in ["1xx", "3xx", "5xx"] {
        assert_eq!(requests(&text, "/", class), 0.0, "{text}");
    }
    assert_eq!(plugin(&text, "serve_file"), 35.0, "{text}");
    assert_eq!(plugin(&text, "core"), 3.0, "{text}");
    assert_eq!(plugin(&text, "stats"), 2.0, "{text}");
    for (location, total) in [("/", 42.0), ("/app", 5.0)] {
        let (buckets, count) = histogram(&text, location);
        assert_eq!(buckets.len(), 15, "{text}");
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        assert_eq!(*buckets.last().unwrap(), count);
        assert_eq!(count, total, "{text}");
    }
    assert!(text.contains("# TYPE axkit_requests_total counter\n"));
    assert!(text.contains("# TYPE axkit_request_duration_seconds histogram\n"));
    assert!(text.contains("# TYPE axkit_connections gauge\n"));

    // The scrape itself counts once it is answered.
    let again = metrics(&srv);
    assert_eq!(requests(&again, "/", "2xx"), 31.0, "{again}");
    // Both workers are there, and what they answered adds up.
    let status = status_json(&srv);
    let workers = status["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{status}");
    let sum: u64 = workers
        .iter()
        .map(|w| w["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, 30 + 5 + 7 + 3 + 2 + 2, "{status}");
}

#[test]
fn counts_survive_a_reload_and_a_killed_worker() {
    let mut srv = start("");
    let mut ok = 0;
    for _ in 0..10 {
        assert_eq!(srv.get("/a.txt").status, 200);
        ok += 1;
    }
    srv.signal(1); // SIGHUP
    srv.wait_stderr("configuration reloaded", Duration::from_secs(30));
    let mut newest = Vec::new();
    assert!(wait_until(Duration::from_secs(20), || {
        let status = status_json(&srv);
        ok += 1;
        newest = status["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["generation"] == 2)
            .map(|w| w["pid"].as_i64().unwrap() as i32)
            .collect();
        newest.len() == 2 && status["workers"].as_array().unwrap().len() == 2
    }));
    // A worker of the new generation dies: its replacement carries on.
    signal(newest[0], 9);
    assert!(wait_until(Duration::from_secs(20), || {
        let status = status_json(&srv);
        ok += 1;
        status["worker_restarts"] == 1 && status["workers"].as_array().unwrap().len() == 2
    }));
    for _ in 0..10 {
        assert_eq!(srv.get("/a.txt").status, 200);
        ok += 1;
    }
    let text = metrics(&srv);
    assert_eq!(requests(&text, "/", "2xx"), f64::from(ok), "{text}");
    assert_eq!(sample(&text, "axkit_reloads_total"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "axkit_worker_restarts_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "axkit_workers"), Some(2.0), "{text}");
}

#[test]
fn the_json_status_has_its_fields_and_the_page_is_html() {
    let srv = start("");
    assert_eq!(srv.get("/a.txt").status, 200);
    // A keep-alive connection left open after its request.
    let mut held = srv.connect();
    held.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_server_read(&held);
    let status = status_json(&srv);
    assert_eq!(status["generation"], 1);
    assert_eq!(status["reloads"], 0);
    assert_eq!(status["worker_restarts"], 0);
    for state in ["reading", "handler", "idle", "waiting"] {
        assert!(status["connections"][state].is_u64(), "{status}");
    }
    // The status request itself is being handled.
    assert!(
        status["connections"]["handler"].as_u64().unwrap() >= 1,
        "{status}"
    );
    let series = status["series"].as_array().unwrap();
    let root = series
        .iter()
        .find(|s| s["location"] == "/" && s["server"] == "www.test")
        .expect("the server's root series");
    assert!(root["requests"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(root["status"]["2xx"], root["requests"]);
    assert!(root["latency_sum_seconds"].is_f64());
    assert_eq!(root["latency_buckets"].as_array().unwrap().len(), 15);
    assert!(series.iter().any(|s| s["location"] == "/app"));
    assert!(status["plugins"]["serve_file"].as_u64().unwrap() >= 1);
    for w in status["workers"].as_array().unwrap() {
        assert!(w["pid"].as_u64().unwrap() > 0);
        assert_eq!(w["generation"], 1);
    }
    // Also by query.
    let r = srv.get("/status?format=json");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    serde_json::from_slice::<serde_json::Value>(&r.body).unwrap();
    let page = srv.get("/status");
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.text().contains("<h1>AxKit status</h1>"));
    assert!(page.text().contains("www.test"));
    // The held connection shows as idle once answered.
    let text = metrics(&srv);
    assert!(
        sample(&text, "axkit_connections{state=\"idle\"}").unwrap() >= 1.0,
        "{text}"
    );
    drop(held);
}

/// GET `path` from a client bound to `from`.
fn get_from(srv: &Axkit, from: &str, path: &str) -> u16 {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&srv.addr.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (bytes, _) = read_to_end_within(&mut s, Duration::from_secs(10));
    parse_response(&bytes).expect("a response").status
}

#[test]
fn only_allowed_clients_see_the_pages() {
    let srv = start("StatsAllow 127.0.0.1/32");
    for path in ["/metrics", "/status", "/status?format=json"] {
        assert_eq!(get_from(&srv, "127.0.0.2", path), 403, "{path}");
        assert_eq!(get_from(&srv, "127.0.0.1", path), 200, "{path}");
    }
    // Other paths are not the plugin's business.
    assert_eq!(get_from(&srv, "127.0.0.2", "/a.txt"), 200);
    drop(srv);
    // By default, loopback only: 127.0.0.2 is loopback.
    let srv = start("");
    assert_eq!(get_from(&srv, "127.0.0.2", "/metrics"), 200);
}

/// The `<Location>` rules around the pages apply on top of `StatsAllow`:
/// the plugin answers after access control and authentication.
#[test]
fn location_access_rules_protect_the_pages() {
    let conf = "Workers 1\n\
Plugin logging/warn\n\
Plugin stats\n\
StatsPath /status\n\
MetricsPath /metrics\n\
<Server>\n\
    Listen 127.0.0.1:0\n\
    DocumentRoot {dir}/www\n\
    Plugin access\n\
    Plugin auth_basic\n\
    Plugin uri_to_file\n\
    Plugin serve_file\n\
    AuthUserFile {dir}/htpasswd\n\
    <Location /status>\n\
        AuthName ops\n\
        Require valid-user\n\
    </Location>\n\
    <Location /metrics>\n\
        Deny from all\n\
    </Location>\n\
</Server>\n";
    let srv = Axkit::start_with(conf, &[], |d| {
        d.write("www/a.txt", "hello\n");
        // ada:open sesame
        d.write(
            "htpasswd",
            "ada:$2b$04$LHGutq5Cfg.TnP.3SjDabexndGgjKcWdYKFXaaUmMTeUvxMEF31HG\n",
        );
    });
    let ada = "Authorization: Basic YWRhOm9wZW4gc2VzYW1l\r\n";
    let wrong = "Authorization: Basic YWRhOndyb25n\r\n"; // ada:wrong
    let (bytes, _) = srv.raw(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = parse_response(&bytes).unwrap();
    assert_eq!(r.status, 401, "{}", lossy(&bytes));
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Basic realm=\"ops\", charset=\"UTF-8\"")
    );
    assert_eq!(get(&srv, "/status?format=json", wrong).status, 401);
    let r = get(&srv, "/status?format=json", ada);
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice::<serde_json::Value>(&r.body).unwrap();
    assert_eq!(srv.get("/metrics").status, 403);
    assert_eq!(get(&srv, "/metrics", ada).status, 403);
    assert_eq!(srv.get("/a.txt").status, 200);
}

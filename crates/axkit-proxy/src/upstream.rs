//! Upstream groups: `<Upstream NAME>` blocks, which server of a group takes
//! a request (weighted round robin, least connections, or a consistent
//! hash of a key), and each server's health as this worker sees it:
//! passive (failed exchanges mark it down for a time) and active (a
//! `HealthCheck` request every interval, in a task of the worker).
//!
//! ```text
//! <Upstream app>
//!     Server 127.0.0.1:9001 weight=2
//!     Server https://10.0.0.3:9443 # TLS to this one
//!     Balance least-conn            # round-robin (default) | least-conn | hash KEY
//!     MaxFails 1                    # failed exchanges in a row that mark a server down (0: never)
//!     FailTimeout 10s               # for how long (above 0)
//!     HealthCheck /health 2s        # GET it every 2s: 2xx/3xx up, else down
//! </Upstream>
//! ```
//!
//! A hash `KEY` is `client` (the client's address), `uri` (path and
//! query), `header:NAME` or `cookie:NAME`. State is per worker: each
//! worker balances, counts and checks on its own.

use std::cell::Cell;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant};

use axkit::config::{BlockLine, Config, Setting};
use axkit::plugin::Worker;
use axkit::{Context, Level};
use axkit_client::{Client, Origin, Request};

/// How a group picks a server.
#[derive(Debug)]
enum Balance {
    RoundRobin,
    LeastConn,
    Hash(HashKey),
}

/// What a `Balance hash` key is taken from.
#[derive(Debug)]
enum HashKey {
    Client,
    Uri,
    Header(String),
    Cookie(String),
}

/// One server of a group, with this worker's view of it.
#[derive(Debug)]
pub(crate) struct Server {
    /// `host:port`.
    pub authority: String,
    /// `http://host:port` or `https://host:port`, parsed once.
    pub origin: Origin,
    weight: u32,
    /// Smooth weighted round robin's running weight.
    current: Cell<i64>,
    /// Requests in flight to it.
    active: Cell<u32>,
    /// Failed exchanges in a row.
    fails: Cell<u32>,
    /// Marked down by failed exchanges until then.
    down_until: Cell<Option<Instant>>,
    /// Marked down by the last health check.
    check_down: Cell<bool>,
}

impl Server {
    fn up(&self, now: Instant) -> bool {
        !self.check_down.get() && self.down_until.get().is_none_or(|t| t <= now)
    }
}

/// An `<Upstream NAME>` group.
#[derive(Debug)]
pub(crate) struct Group {
    pub name: String,
    pub servers: Vec<Server>,
    balance: Balance,
    max_fails: u32,
    fail_timeout: Duration,
    health: Option<(String, Duration)>,
}

/// Counts a request in flight to a server for as long as it lives.
pub(crate) struct InFlight {
    group: Rc<Group>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let active = &self.group.servers[self.index].active;
        active.set(active.get().saturating_sub(1));
    }
}

impl Group {
    /// The server for this try: one that is up and not tried yet for this
    /// request, else (every one down) one not tried yet, so that a group
    /// whose servers all failed recently still gets a chance (any, once
    /// every one was tried).
    pub fn pick(self: &Rc<Self>, ctx: &Context, tried: &[usize]) -> (usize, InFlight) {
        let now = Instant::now();
        let mut fresh: Vec<usize> = (0..self.servers.len())
            .filter(|i| !tried.contains(i))
            .collect();
        if fresh.is_empty() {
            fresh = (0..self.servers.len()).collect();
        }
        let up: Vec<usize> = fresh
            .iter()
            .copied()
            .filter(|&i| self.servers[i].up(now))
            .collect();
        let candidates = if up.is_empty() { fresh } else { up };
        let index = match &self.balance {
            _ if candidates.len() == 1 => candidates[0],
            Balance::RoundRobin => self.round_robin(&candidates),
            Balance::LeastConn => self.least_conn(&candidates),
            Balance::Hash(key) => self.hash(&key_of(ctx, key), &candidates),
        };
        let server = &self.servers[index];
        server.active.set(server.active.get() + 1);
        (
            index,
            InFlight {
                group: self.clone(),
                index,
            },
        )
    }

    /// nginx's smooth weighted round robin: each server gains its weight,
    /// the richest is picked and pays the total.
    fn round_robin(&self, candidates: &[usize]) -> usize {
        let mut total = 0i64;
        let mut best = candidates[0];
        for &i in candidates {
            let s = &self.servers[i];
            s.current.set(s.current.get() + i64::from(s.weight));
            total += i64::from(s.weight);
            if s.current.get() > self.servers[best].current.get() {
                best = i;
            }
        }
        let s = &self.servers[best];
        s.current.set(s.current.get() - total);
        best
    }

    /// The fewest requests in flight for its weight; round robin among
    /// equals.
    fn least_conn(&self, candidates: &[usize]) -> usize {
        let load = |i: usize| {
            let s = &self.servers[i];
            (u64::from(s.active.get()), u64::from(s.weight))
        };
        // a/wa < b/wb  ⇔  a·wb < b·wa
        let least = candidates
            .iter()
            .map(|&i| load(i))
            .min_by(|(a, wa), (b, wb)| (a * wb).cmp(&(b * wa)))
            .expect("candidates is not empty");
        let equal: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| {
                let (a, wa) = load(i);
                a * least.1 == least.0 * wa
            })
            .collect();
        self.round_robin(&equal)
    }

    /// Rendezvous hashing, weighted: each server scores the key, the
    /// highest takes it. A server leaving moves only its own keys.
    fn hash(&self, key: &str, candidates: &[usize]) -> usize {
        let score = |i: usize| {
            let mut h = DefaultHasher::new();
            (key, &self.servers[i].authority).hash(&mut h);
            // A uniform draw in (0, 1), then -weight / ln(u).
            let u = ((h.finish() >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 2.0);
            -f64::from(self.servers[i].weight) / u.ln()
        };
        *candidates
            .iter()
            .max_by(|&&a, &&b| score(a).total_cmp(&score(b)))
            .expect("candidates is not empty")
    }

    /// An exchange with server `index` failed before its response: after
    /// `MaxFails` in a row it is down for `FailTimeout`; never with `MaxFails 0`.
    pub fn failed(&self, index: usize) -> bool {
        // `MaxFails 0`: no server is ever marked down (nginx's `max_fails=0`).
        if self.max_fails == 0 {
            return false;
        }
        let s = &self.servers[index];
        s.fails.set(s.fails.get() + 1);
        if s.fails.get() >= self.max_fails {
            s.fails.set(0);
            s.down_until.set(Some(Instant::now() + self.fail_timeout));
            return true;
        }
        false
    }

    /// An exchange with server `index` got its response.
    pub fn answered(&self, index: usize) {
        let s = &self.servers[index];
        s.fails.set(0);
        s.down_until.set(None);
    }

    /// Check each server every interval until the worker drains; log
    /// each change.
    pub fn start_checks(self: &Rc<Self>, worker: &Worker, client: &Client) {
        let Some((path, interval)) = self.health.clone() else {
            return;
        };
        let (group, worker, client) = (self.clone(), worker.clone(), client.clone());
        tokio::task::spawn_local(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = worker.stopping() => return,
                }
                for s in &group.servers {
                    let verdict = check(&client, &s.origin, &path, interval).await;
                    let was_down = s.check_down.get();
                    match verdict {
                        Ok(()) if was_down => {
                            s.check_down.set(false);
                            s.down_until.set(None);
                            worker.log(
                                Level::Notice,
                                &format!(
                                    "proxy: upstream {}: {} is up again",
                                    group.name, s.authority
                                ),
                            );
                        }
                        Err(why) if !was_down => {
                            s.check_down.set(true);
                            worker.log(
                                Level::Warn,
                                &format!(
                                    "proxy: upstream {}: {} is down: health check: {why}",
                                    group.name, s.authority
                                ),
                            );
                        }
                        _ => {}
                    }
                }
            }
        });
    }
}

/// One health check: `GET path`, its body read, within `limit`.
async fn check(
    client: &Client,
    origin: &Origin,
    path: &str,
    limit: Duration,
) -> Result<(), String> {
    let request = Request::to("GET", origin, path)
        .map_err(|e| e.to_string())?
        .timeout(limit.max(Duration::from_millis(100)))
        .max_size(Some(64 * 1024));
    let response = client.send(request).await.map_err(|e| e.to_string())?;
    let status = response.status;
    response.bytes().await.map_err(|e| e.to_string())?;
    match status {
        200..=399 => Ok(()),
        _ => Err(format!("status {status}")),
    }
}

fn key_of(ctx: &Context, key: &HashKey) -> String {
    match key {
        HashKey::Client => ctx.client().addr.ip().to_string(),
        HashKey::Uri => ctx.request.uri().to_string(),
        HashKey::Header(name) => ctx.request.header(name).unwrap_or("").to_string(),
        HashKey::Cookie(name) => ctx.request.cookie(name).unwrap_or("").to_string(),
    }
}

/// Every `<Upstream>` block of the config, by name.
pub(crate) fn groups(config: &Config) -> Result<HashMap<String, Rc<Group>>, String> {
    let mut groups = HashMap::new();
    for setting in config.global.settings(crate::UPSTREAM_BLOCK) {
        let group = parse_group(setting)?;
        let name = group.name.clone();
        if groups.insert(name.clone(), Rc::new(group)).is_some() {
            return Err(format!(
                "{}:{}: Upstream {name}: a second group of that name",
                setting.file, setting.line
            ));
        }
    }
    Ok(groups)
}

fn parse_group(setting: &Setting) -> Result<Group, String> {
    let name = match setting.args.get(1).and_then(|v| v.as_str()) {
        Some(name) if setting.args.len() == 2 => name.to_string(),
        _ => {
            return Err(format!(
                "{}:{}: Upstream: expected <Upstream NAME>",
                setting.file, setting.line
            ))
        }
    };
    let lines = setting.args[0].as_block().unwrap_or(&[]);
    let mut group = Group {
        name: name.clone(),
        servers: Vec::new(),
        balance: Balance::RoundRobin,
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
        health: None,
    };
    for line in lines {
        parse_line(&mut group, line)
            .map_err(|e| format!("{}:{}: Upstream {name}: {e}", line.file, line.line))?;
    }
    if group.servers.is_empty() {
        return Err(format!(
            "{}:{}: Upstream {name}: no Server in it",
            setting.file, setting.line
        ));
    }
    Ok(group)
}

fn parse_line(group: &mut Group, line: &BlockLine) -> Result<(), String> {
    use axkit::config::parse;
    let args: Vec<&str> = line.args.iter().map(String::as_str).collect();
    if !line.children.is_empty() {
        return Err(format!("{}: not a block", line.name));
    }
    match (line.name.to_ascii_lowercase().as_str(), args.as_slice()) {
        ("server", [server, options @ ..]) => {
            // `HOST:PORT` is plain HTTP, as nginx's `server` lines; a
            // scheme says TLS, as Apache's `BalancerMember https://…`.
            let (scheme, authority) = match server.split_once("://") {
                Some((scheme @ ("http" | "https"), authority)) => (scheme, authority),
                Some(_) => ("", *server),
                None => ("http", *server),
            };
            let origin = Origin::parse(&format!("{scheme}://{authority}"))
                .ok()
                .filter(|_| !scheme.is_empty() && !authority.contains(['/', '?', '#']))
                .ok_or_else(|| {
                    format!("Server: expected HOST:PORT or https://HOST:PORT, got {server:?}")
                })?;
            let mut weight = 1;
            for option in options {
                weight = option
                    .strip_prefix("weight=")
                    .and_then(|w| w.parse::<u32>().ok())
                    .filter(|w| (1..=1000).contains(w))
                    .ok_or_else(|| {
                        format!("Server: expected weight=N (1 to 1000), got {option:?}")
                    })?;
            }
            group.servers.push(Server {
                authority: authority.to_string(),
                origin,
                weight,
                current: Cell::new(0),
                active: Cell::new(0),
                fails: Cell::new(0),
                down_until: Cell::new(None),
                check_down: Cell::new(false),
            });
        }
        ("balance", ["round-robin"]) => group.balance = Balance::RoundRobin,
        ("balance", ["least-conn"]) => group.balance = Balance::LeastConn,
        ("balance", ["hash", key]) => {
            group.balance = Balance::Hash(match *key {
                "client" => HashKey::Client,
                "uri" => HashKey::Uri,
                k => match k.split_once(':') {
                    Some(("header", n)) if !n.is_empty() => HashKey::Header(n.to_string()),
                    Some(("cookie", n)) if !n.is_empty() => HashKey::Cookie(n.to_string()),
                    _ => {
                        return Err(format!(
                        "Balance hash: expected client, uri, header:NAME or cookie:NAME, got {k:?}"
                    ))
                    }
                },
            })
        }
        ("balance", _) => {
            return Err("expected Balance round-robin|least-conn|hash KEY".into());
        }
        ("maxfails", [n]) => {
            group.max_fails = parse::integer(n)
                .ok()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    format!("MaxFails: expected a count (0: never mark a server down), got {n:?}")
                })?;
        }
        ("failtimeout", [d]) => {
            group.fail_timeout = parse::duration(d)?;
            if group.fail_timeout.is_zero() {
                return Err(
                    "FailTimeout: 0 would bring a server marked down back at once: \
                     expected a duration above 0 (MaxFails 0 never marks one down)"
                        .into(),
                );
            }
        }
        ("healthcheck", [path, interval]) if path.starts_with('/') => {
            let interval = parse::duration(interval)?;
            if interval.is_zero() {
                return Err("HealthCheck: the interval must be above 0".into());
            }
            group.health = Some((path.to_string(), interval));
        }
        (name, _) => {
            return Err(format!(
            "unknown or malformed line {name:?}: expected Server [https://]HOST:PORT [weight=N], \
                 Balance, MaxFails N, FailTimeout DURATION or HealthCheck /PATH INTERVAL"
        ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> BlockLine {
        let mut words = text.split_whitespace();
        BlockLine {
            name: words.next().unwrap().to_string(),
            args: words.map(str::to_string).collect(),
            file: "t.conf".into(),
            line: 1,
            children: Vec::new(),
        }
    }

    fn group(lines: &[&str]) -> Group {
        let mut group = Group {
            name: "t".into(),
            servers: Vec::new(),
            balance: Balance::RoundRobin,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            health: None,
        };
        for text in lines {
            parse_line(&mut group, &line(text)).unwrap();
        }
        group
    }

    #[test]
    fn weighted_round_robin_is_smooth() {
        let g = group(&["Server a:1 weight=2", "Server b:1", "Server c:1"]);
        let picks: Vec<usize> = (0..8).map(|_| g.round_robin(&[0, 1, 2])).collect();
        assert_eq!(picks, [0, 1, 2, 0, 0, 1, 2, 0]);
    }

    #[test]
    fn least_conn_takes_the_least_loaded_for_its_weight() {
        let g = group(&["Server a:1 weight=2", "Server b:1"]);
        g.servers[0].active.set(3);
        g.servers[1].active.set(1);
        assert_eq!(g.least_conn(&[0, 1]), 1);
        g.servers[1].active.set(2);
        assert_eq!(g.least_conn(&[0, 1]), 0);
    }

    #[test]
    fn a_hash_moves_only_the_keys_of_a_server_that_leaves() {
        let g = group(&["Server a:1", "Server b:1", "Server c:1"]);
        let keys: Vec<String> = (0..300).map(|i| format!("user{i}")).collect();
        let all: Vec<usize> = keys.iter().map(|k| g.hash(k, &[0, 1, 2])).collect();
        for s in 0..3 {
            let n = all.iter().filter(|&&x| x == s).count();
            assert!((50..150).contains(&n), "server {s} has {n} of 300 keys");
        }
        for (k, &before) in keys.iter().zip(&all) {
            let after = g.hash(k, &[0, 2]);
            if before != 1 {
                assert_eq!(after, before, "{k} moved");
            }
        }
    }

    #[test]
    fn bad_lines_are_refused() {
        let mut g = group(&["Server a:1"]);
        for text in [
            "Server a:1/x",
            "Balance random",
            "MaxFails -1",
            "FailTimeout 0",
            "HealthCheck health 1s",
        ] {
            assert!(parse_line(&mut g, &line(text)).is_err(), "{text}");
        }
    }
}

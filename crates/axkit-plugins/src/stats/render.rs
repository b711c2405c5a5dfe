//! The `stats` plugin's three views of a metrics [`Snapshot`]: the
//! Prometheus text exposition format (0.0.4), JSON and an HTML page.
//!
//! The Prometheus text is written by hand rather than with the
//! `prometheus-client` crate: that crate keeps its own registry of
//! metrics in this process's memory and encodes from it, while ours live
//! in shared memory, summed over the workers at each scrape; copying a
//! snapshot into its registry to have it encoded would cost more than the
//! format, which is a few lines of text with two escaping rules.

use std::fmt::Write;

use axkit::plugin::html_escape;
use axkit::plugin::metrics::{ConnState, Series, Snapshot, LATENCY_BUCKETS_US};

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// A label value: `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A HELP text: `\` and newlines escaped.
fn help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {}", help(text));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn series_labels(s: &Series) -> String {
    format!(
        "server=\"{}\",location=\"{}\"",
        label(&s.server),
        label(&s.location)
    )
}

/// Seconds from microseconds, as Prometheus writes a float.
fn seconds(us: u64) -> String {
    format!("{}", us as f64 / 1e6)
}

/// The series worth showing: every Location, but `other` only once used.
fn shown(snapshot: &Snapshot) -> impl Iterator<Item = &Series> {
    snapshot
        .series
        .iter()
        .filter(|s| !(s.server == "other" && s.location == "other") || s.requests() > 0)
}

/// The text exposition format 0.0.4.
pub fn prometheus(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    head(
        &mut out,
        "axkit_requests_total",
        "counter",
        "Responses sent, by server, location and status class.",
    );
    for s in shown(snapshot) {
        for (class, n) in CLASSES.iter().zip(s.status) {
            let _ = writeln!(
                out,
                "axkit_requests_total{{{},class=\"{class}\"}} {n}",
                series_labels(s)
            );
        }
    }
    head(
        &mut out,
        "axkit_request_duration_seconds",
        "histogram",
        "Time from a request's head read to its response sent.",
    );
    for s in shown(snapshot) {
        let labels = series_labels(s);
        let mut cumulative = 0;
        for (i, n) in s.buckets.iter().enumerate() {
            cumulative += n;
            let le = match LATENCY_BUCKETS_US.get(i) {
                Some(&us) => seconds(us),
                None => "+Inf".into(),
            };
            let _ = writeln!(
                out,
                "axkit_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "axkit_request_duration_seconds_sum{{{labels}}} {}",
            seconds(s.latency_sum_us)
        );
        let _ = writeln!(
            out,
            "axkit_request_duration_seconds_count{{{labels}}} {cumulative}"
        );
    }
    head(
        &mut out,
        "axkit_response_body_bytes_total",
        "counter",
        "Response body bytes sent, by server and location.",
    );
    for s in shown(snapshot) {
        let _ = writeln!(
            out,
            "axkit_response_body_bytes_total{{{}}} {}",
            series_labels(s),
            s.bytes
        );
    }
    head(
        &mut out,
        "axkit_plugin_responses_total",
        "counter",
        "Responses by the plugin that decided them (core: no plugin did).",
    );
    for (plugin, n) in &snapshot.plugins {
        if plugin != "other" || *n > 0 {
            let _ = writeln!(
                out,
                "axkit_plugin_responses_total{{plugin=\"{}\"}} {n}",
                label(plugin)
            );
        }
    }
    head(
        &mut out,
        "axkit_connections",
        "gauge",
        "Open connections by state.",
    );
    for state in ConnState::ALL {
        let _ = writeln!(
            out,
            "axkit_connections{{state=\"{}\"}} {}",
            state.as_str(),
            snapshot.connections[state as usize]
        );
    }
    let workers = snapshot.workers.iter().filter(|w| w.alive).count();
    for (name, kind, text, value) in [
        (
            "axkit_connections_accepted_total",
            "counter",
            "Connections accepted.",
            snapshot.accepted,
        ),
        (
            "axkit_worker_restarts_total",
            "counter",
            "Worker processes started in place of one that died.",
            snapshot.restarts,
        ),
        (
            "axkit_reloads_total",
            "counter",
            "Configuration reloads that took effect.",
            snapshot.generation.saturating_sub(1),
        ),
        (
            "axkit_config_generation",
            "gauge",
            "The newest configuration generation running.",
            snapshot.generation,
        ),
        (
            "axkit_workers",
            "gauge",
            "Worker processes running (a reload's old ones included while they drain).",
            workers as u64,
        ),
    ] {
        head(&mut out, name, kind, text);
        let _ = writeln!(out, "{name} {value}");
    }
    for g in &snapshot.gauges {
        head(&mut out, &g.name, "gauge", &g.help);
        let _ = writeln!(out, "{} {}", g.name, g.value);
    }
    out
}

/// The status as JSON.
pub fn json(snapshot: &Snapshot) -> String {
    use serde_json::{json, Map, Value};
    let series: Vec<Value> = shown(snapshot)
        .map(|s| {
            let status: Map<String, Value> = CLASSES
                .iter()
                .zip(s.status)
                .map(|(c, n)| (c.to_string(), n.into()))
                .collect();
            let mut cumulative = 0;
            let buckets: Vec<Value> = s
                .buckets
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    cumulative += n;
                    let le = match LATENCY_BUCKETS_US.get(i) {
                        Some(&us) => json!(us as f64 / 1e6),
                        None => json!("+Inf"),
                    };
                    json!({"le": le, "count": cumulative})
                })
                .collect();
            json!({
                "server": s.server,
                "location": s.location,
                "requests": s.requests(),
                "status": status,
                "latency_sum_seconds": s.latency_sum_us as f64 / 1e6,
                "latency_buckets": buckets,
                "body_bytes": s.bytes,
            })
        })
        .collect();
    let connections: Map<String, Value> = ConnState::ALL
        .iter()
        .map(|s| {
            (
                s.as_str().to_string(),
                snapshot.connections[*s as usize].into(),
            )
        })
        .collect();
    let workers: Vec<Value> = snapshot
        .workers
        .iter()
        .filter(|w| w.alive)
        .map(|w| {
            json!({
                "pid": w.pid,
                "generation": w.generation,
                "index": w.index,
                "started": w.started,
                "connections": w.connections,
                "requests": w.requests,
            })
        })
        .collect();
    let plugins: Map<String, Value> = snapshot
        .plugins
        .iter()
        .filter(|(p, n)| p != "other" || *n > 0)
        .map(|(p, n)| (p.clone(), (*n).into()))
        .collect();
    let gauges: Map<String, Value> = snapshot
        .gauges
        .iter()
        .map(|g| (g.name.clone(), g.value.into()))
        .collect();
    let value = json!({
        "generation": snapshot.generation,
        "reloads": snapshot.generation.saturating_sub(1),
        "worker_restarts": snapshot.restarts,
        "requests": snapshot.series.iter().map(Series::requests).sum::<u64>(),
        "connections_accepted": snapshot.accepted,
        "connections": connections,
        "workers": workers,
        "series": series,
        "plugins": plugins,
        "gauges": gauges,
    });
    let mut text = value.to_string();
    text.push('\n');
    text
}

/// The status as an HTML page.
pub fn html(snapshot: &Snapshot) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>AxKit status</title></head><body>\n<h1>AxKit status</h1>\n",
    );
    let total: u64 = snapshot.series.iter().map(Series::requests).sum();
    let _ = writeln!(
        out,
        "<p>Configuration generation {} ({} reloads), {} worker restarts, {total} requests, {} connections accepted.</p>",
        snapshot.generation,
        snapshot.generation.saturating_sub(1),
        snapshot.restarts,
        snapshot.accepted
    );
    out.push_str("<h2>Connections</h2>\n<table><tr>");
    for state in ConnState::ALL {
        let _ = write!(out, "<th>{}</th>", state.as_str());
    }
    out.push_str("</tr><tr>");
    for state in ConnState::ALL {
        let _ = write!(out, "<td>{}</td>", snapshot.connections[state as usize]);
    }
    out.push_str("</tr></table>\n<h2>Workers</h2>\n<table><tr><th>pid</th><th>generation</th><th>index</th><th>connections</th><th>requests</th></tr>\n");
    for w in snapshot.workers.iter().filter(|w| w.alive) {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            w.pid, w.generation, w.index, w.connections, w.requests
        );
    }
    out.push_str("</table>\n<h2>Requests</h2>\n<table><tr><th>server</th><th>location</th>");
    for c in CLASSES {
        let _ = write!(out, "<th>{c}</th>");
    }
    out.push_str("<th>mean latency (ms)</th><th>body bytes</th></tr>\n");
    for s in shown(snapshot) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td>",
            html_escape(&s.server),
            html_escape(&s.location)
        );
        for n in s.status {
            let _ = write!(out, "<td>{n}</td>");
        }
        let mean = match s.requests() {
            0 => 0.0,
            n => s.latency_sum_us as f64 / n as f64 / 1000.0,
        };
        let _ = writeln!(out, "<td>{mean:.3}</td><td>{}</td></tr>", s.bytes);
    }
    out.push_str("</table>\n<h2>Plugins</h2>\n<table><tr><th>plugin</th><th>responses</th></tr>\n");
    for (p, n) in &snapshot.plugins {
        let _ = writeln!(out, "<tr><td>{}</td><td>{n}</td></tr>", html_escape(p));
    }
    out.push_str("</table>\n");
    if !snapshot.gauges.is_empty() {
        out.push_str("<h2>Gauges</h2>\n<table>\n");
        for g in &snapshot.gauges {
            let _ = writeln!(
                out,
                "<tr><td title=\"{}\">{}</td><td>{}</td></tr>",
                html_escape(&g.help),
                html_escape(&g.name),
                g.value
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(help("x\\y\nz"), "x\\\\y\\nz");
    }

    #[test]
    fn buckets_are_cumulative_and_end_with_the_count() {
        let mut s = Series {
            server: "s".into(),
            location: "/".into(),
            ..Series::default()
        };
        s.status[1] = 3;
        s.buckets[0] = 1;
        s.buckets[3] = 2;
        let snapshot = Snapshot {
            series: vec![s],
            ..Snapshot::default()
        };
        let text = prometheus(&snapshot);
        assert!(text.contains(
            "axkit_request_duration_seconds_bucket{server=\"s\",location=\"/\",le=\"0.0005\"} 1\n"
        ));
        assert!(text.contains(
            "axkit_request_duration_seconds_bucket{server=\"s\",location=\"/\",le=\"+Inf\"} 3\n"
        ));
        assert!(
            text.contains("axkit_request_duration_seconds_count{server=\"s\",location=\"/\"} 3\n")
        );
        assert!(text.contains("# TYPE axkit_request_duration_seconds histogram\n"));
    }
}

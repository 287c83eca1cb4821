//! The overview's numbers: per-app values read from the Hubs, node-wide
//! counters read from the same text `/metrics` serves, and a short history
//! of rates for the charts.
//!
//! Reading the rendered metrics (rather than the `Metrics` fields) keeps
//! the dashboard a reader of whatever the node exposes: counters other
//! modules register later (webhooks, `realtime_webhook_*`; the cluster's
//! Redis link, `realtime_redis_*`) appear on the page without a change
//! here. Rendering costs what one scrape costs, once per poll.
//!
//! # History
//!
//! A ring of at most [`HISTORY`] samples of the cumulative counters, one
//! taken per overview request at most every [`STEP`]; the rates are the
//! differences between neighbours over their time apart. Nothing samples
//! while no dashboard polls, so the charts show the last five minutes
//! that a dashboard was open.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::app::{App, Apps};

/// Samples kept: five minutes at one a second.
pub const HISTORY: usize = 301;
/// Least time between two samples.
pub const STEP: Duration = Duration::from_millis(900);

/// One metric line: name, labels (as written, without braces) and value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Line {
    pub(crate) name: String,
    pub(crate) labels: String,
    pub(crate) value: f64,
}

/// Parses OpenMetrics text into its sample lines (comments skipped,
/// unparsable lines ignored).
pub(crate) fn parse_metrics(text: &str) -> Vec<Line> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            Some(Line {
                name: name.to_owned(),
                labels: labels.to_owned(),
                value,
            })
        })
        .collect()
}

/// The value of label `key` in `labels` (`a="x",b="y"`).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &labels[start..];
    rest.find('"').map(|end| &rest[..end])
}

fn sum(lines: &[Line], name: &str) -> Option<f64> {
    let mut found = false;
    let total = lines
        .iter()
        .filter(|l| l.name == name)
        .inspect(|_| found = true)
        .map(|l| l.value)
        .sum();
    found.then_some(total)
}

/// `{label value: count}` of a labelled counter.
fn by_label(lines: &[Line], name: &str, key: &str) -> BTreeMap<String, f64> {
    lines
        .iter()
        .filter(|l| l.name == name)
        .filter_map(|l| Some((label(&l.labels, key)?.to_owned(), l.value)))
        .collect()
}

/// `{series: value}` of every line whose name starts with `prefix`.
fn with_prefix(lines: &[Line], prefix: &str) -> BTreeMap<String, f64> {
    lines
        .iter()
        .filter(|l| l.name.starts_with(prefix) && !l.name.ends_with("_bucket"))
        .map(|l| {
            let series = if l.labels.is_empty() {
                l.name.clone()
            } else {
                format!("{}{{{}}}", l.name, l.labels)
            };
            (series, l.value)
        })
        .collect()
}

/// The cumulative counters the charts show rates of.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Totals {
    messages_in: f64,
    messages_out: f64,
    published: f64,
    dropped: f64,
}

fn totals(lines: &[Line]) -> Totals {
    let get = |n: &str| sum(lines, n).unwrap_or(0.0);
    // Frames written by the transport when there is one; socket-free
    // nodes count what they hand to outboxes.
    let messages_out = sum(lines, "realtime_transport_frames_out_total").unwrap_or_else(|| {
        get("realtime_fanout_recipients_sum") + get("realtime_replies_out_total")
    });
    Totals {
        messages_in: get("realtime_messages_in_total"),
        messages_out,
        published: get("realtime_events_published_total"),
        dropped: get("realtime_dropped_frames_total"),
    }
}

/// The rate history; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: Mutex<VecDeque<(Instant, u64, Totals)>>,
}

impl History {
    /// Adds a sample taken at `now` (`unix_ms`) unless the last one is
    /// younger than [`STEP`]; returns the rates between neighbours,
    /// oldest first, as `[unix_ms, in/s, out/s, published/s, dropped/s]`.
    fn sample(&self, now: Instant, unix_ms: u64, t: Totals) -> Vec<[f64; 5]> {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let due = s
            .back()
            .is_none_or(|(at, _, _)| now.saturating_duration_since(*at) >= STEP);
        if due {
            if s.len() == HISTORY {
                s.pop_front();
            }
            s.push_back((now, unix_ms, t));
        }
        s.iter()
            .zip(s.iter().skip(1))
            .map(|((a_at, _, a), (b_at, b_ms, b))| {
                let dt = b_at
                    .saturating_duration_since(*a_at)
                    .as_secs_f64()
                    .max(1e-3);
                let rate = |x: f64, y: f64| ((y - x) / dt).max(0.0);
                [
                    *b_ms as f64,
                    rate(a.messages_in, b.messages_in),
                    rate(a.messages_out, b.messages_out),
                    rate(a.published, b.published),
                    rate(a.dropped, b.dropped),
                ]
            })
            .collect()
    }
}

/// Distinct presence users of `app`'s presence channel `name`.
pub(crate) fn user_count(app: &App, name: &str) -> usize {
    match app.cluster_roster() {
        Some(r) => r.user_count(name),
        None => app.hub().presence(name).len(),
    }
}

fn app_overview(app: &App) -> Value {
    let channels = app.hub().channels();
    let presence_users: usize = channels
        .iter()
        .filter(|(n, _)| n.starts_with("presence-"))
        .map(|(n, _)| user_count(app, n))
        .sum();
    let drops: u64 = app.connections().iter().map(|c| c.client().drops()).sum();
    let cluster = app.cluster_roster().map(|r| {
        let nodes: BTreeMap<String, usize> = r
            .nodes()
            .into_iter()
            .map(|n| {
                let members = r.entries_of(&n).len();
                (n, members)
            })
            .collect();
        json!({ "node": r.node(), "presence_members_by_node": nodes })
    });
    json!({
        "id": app.id(),
        "connections": app.connection_count(),
        "channels": channels.len(),
        "presence_users": presence_users,
        "drops": drops,
        "cluster": cluster,
    })
}

/// The overview document: see `GET /dashboard/api/overview` in the
/// module docs of `dashboard/`.
pub(crate) fn overview(
    apps: &Apps,
    metrics_text: &str,
    history: &History,
    node: &str,
    now: Instant,
    unix_ms: u64,
) -> Value {
    let lines = parse_metrics(metrics_text);
    let t = totals(&lines);
    let rates = history.sample(now, unix_ms, t);
    json!({
        "node": node,
        "apps": apps.all().iter().map(|a| app_overview(a)).collect::<Vec<_>>(),
        "totals": {
            "messages_in": t.messages_in,
            "messages_out": t.messages_out,
            "published": t.published,
            "dropped": t.dropped,
        },
        "disconnects": by_label(&lines, "realtime_disconnects_total", "reason"),
        "http": by_label(&lines, "realtime_http_requests_total", "status"),
        "webhooks": with_prefix(&lines, "realtime_webhook"),
        "redis": with_prefix(&lines, "realtime_redis"),
        "rates": rates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x y\n\
        realtime_messages_in_total 5\n\
        realtime_disconnects_total{reason=\"pong_timeout\"} 2\n\
        realtime_http_requests_total{status=\"200\"} 7\n\
        realtime_http_requests_total{status=\"401\"} 1\n\
        realtime_webhook_sent_total{outcome=\"ok\"} 3\n\
        realtime_transport_frames_out_total 11\n\
        # EOF\n";

    #[test]
    fn metric_lines_parse_into_name_labels_and_value() {
        let lines = parse_metrics(TEXT);
        assert_eq!(lines.len(), 6);
        assert_eq!(
            by_label(&lines, "realtime_http_requests_total", "status"),
            BTreeMap::from([("200".into(), 7.0), ("401".into(), 1.0)])
        );
        assert_eq!(
            with_prefix(&lines, "realtime_webhook"),
            BTreeMap::from([("realtime_webhook_sent_total{outcome=\"ok\"}".into(), 3.0)])
        );
        let t = totals(&lines);
        assert_eq!((t.messages_in, t.messages_out), (5.0, 11.0));
    }

    #[test]
    fn history_keeps_one_sample_per_step_and_reports_rates() {
        let h = History::default();
        let t0 = Instant::now();
        let at = |n: f64| Totals {
            messages_in: n,
            messages_out: 2.0 * n,
            published: 0.0,
            dropped: 0.0,
        };
        assert!(h.sample(t0, 0, at(0.0)).is_empty());
        // Too soon: not sampled.
        assert!(h.sample(t0 + STEP / 2, 1, at(100.0)).is_empty());
        let rates = h.sample(t0 + Duration::from_secs(2), 2000, at(10.0));
        assert_eq!(rates, vec![[2000.0, 5.0, 10.0, 0.0, 0.0]]);
        for i in 0..(HISTORY as u64 + 10) {
            h.sample(t0 + Duration::from_secs(3 + i), 0, at(10.0));
        }
        assert_eq!(h.samples.lock().unwrap().len(), HISTORY);
    }
}

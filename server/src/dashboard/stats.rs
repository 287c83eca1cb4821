//! The overview's numbers: per-app values read from the Hubs and from each
//! app's own message counters (`App::traffic`), node-wide counters read
//! from the same text `/metrics` serves, and a short history of rates, per
//! app and for the node, for the charts.
//!
//! Reading the rendered metrics (rather than the `Metrics` fields) keeps
//! the dashboard a reader of whatever the node exposes: counters other
//! modules register later (webhooks, `realtime_webhook_*`; the cluster's
//! Redis link, `realtime_redis_*`) appear on the page without a change
//! here. Rendering costs what one scrape costs, once per poll.
//!
//! # History
//!
//! A ring of at most [`HISTORY`] samples of the cumulative counters (the
//! node's and each app's), one taken per overview request at most every
//! [`STEP`]; the rates are the differences between neighbours over their
//! time apart. An app's "messages out" are the frames fanned out to its
//! subscribers; the node's are the frames the transport wrote. Nothing samples
//! while no dashboard polls, so the charts show the last five minutes
//! that a dashboard was open.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::app::{App, Apps, Traffic};

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

/// An app's cumulative counts: its own counters (`App::traffic`) plus the
/// drops of its live clients.
fn app_totals(app: &App, live_drops: u64) -> Totals {
    let t = app.traffic();
    let get = |c| Traffic::get(c) as f64;
    Totals {
        messages_in: get(&t.messages_in),
        messages_out: get(&t.messages_out),
        published: get(&t.published),
        dropped: get(&t.dropped_closed) + live_drops as f64,
    }
}

/// One sample: when, and the node's and each app's totals.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    unix_ms: u64,
    node: Totals,
    apps: BTreeMap<String, Totals>,
}

/// Rates between neighbouring samples, oldest first, as
/// `[unix_ms, in/s, out/s, published/s, dropped/s]`.
type Rates = Vec<[f64; 5]>;

/// The rate history; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    /// Adds a sample taken at `now` (`unix_ms`) unless the last one is
    /// younger than [`STEP`]; returns the node's rates and each app's.
    fn sample(
        &self,
        now: Instant,
        unix_ms: u64,
        node: Totals,
        apps: BTreeMap<String, Totals>,
    ) -> (Rates, BTreeMap<String, Rates>) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let due = s
            .back()
            .is_none_or(|last| now.saturating_duration_since(last.at) >= STEP);
        if due {
            if s.len() == HISTORY {
                s.pop_front();
            }
            s.push_back(Sample {
                at: now,
                unix_ms,
                node,
                apps,
            });
        }
        let rates_of = |pick: &dyn Fn(&Sample) -> Option<Totals>| -> Rates {
            s.iter()
                .zip(s.iter().skip(1))
                .filter_map(|(a, b)| {
                    let (x, y) = (pick(a)?, pick(b)?);
                    let dt = b.at.saturating_duration_since(a.at).as_secs_f64().max(1e-3);
                    let rate = |p: f64, q: f64| ((q - p) / dt).max(0.0);
                    Some([
                        b.unix_ms as f64,
                        rate(x.messages_in, y.messages_in),
                        rate(x.messages_out, y.messages_out),
                        rate(x.published, y.published),
                        rate(x.dropped, y.dropped),
                    ])
                })
                .collect()
        };
        let node_rates = rates_of(&|x: &Sample| Some(x.node));
        let ids: Vec<String> = s
            .back()
            .map(|l| l.apps.keys().cloned().collect())
            .unwrap_or_default();
        let per_app = ids
            .into_iter()
            .map(|id| {
                let r = rates_of(&|x: &Sample| x.apps.get(&id).copied());
                (id, r)
            })
            .collect();
        (node_rates, per_app)
    }
}

/// Distinct presence users of `app`'s presence channel `name`.
pub(crate) fn user_count(app: &App, name: &str) -> usize {
    match app.cluster_roster() {
        Some(r) => r.user_count(name),
        None => app.hub().presence(name).len(),
    }
}

fn app_overview(app: &App, rates: Option<&Rates>) -> Value {
    let channels = app.hub().channels();
    let presence_users: usize = channels
        .iter()
        .filter(|(n, _)| n.starts_with("presence-"))
        .map(|(n, _)| user_count(app, n))
        .sum();
    let drops = live_drops(app);
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
        "rates": rates.cloned().unwrap_or_default(),
    })
}

/// Frames dropped for `app`'s live clients.
fn live_drops(app: &App) -> u64 {
    app.connections().iter().map(|c| c.client().drops()).sum()
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
    let per_app = apps
        .all()
        .iter()
        .map(|a| (a.id().to_owned(), app_totals(a, live_drops(a))))
        .collect();
    let (rates, app_rates) = history.sample(now, unix_ms, t, per_app);
    json!({
        "node": node,
        "apps": apps
            .all()
            .iter()
            .map(|a| app_overview(a, app_rates.get(a.id())))
            .collect::<Vec<_>>(),
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
    fn an_apps_totals_are_its_own_counters_plus_its_live_drops() {
        use crate::config::{AppConfig, ClientLimits};
        let app = App::new(AppConfig::dev(), ClientLimits::default());
        let t = app.traffic();
        Traffic::add(&t.messages_in, 3);
        Traffic::add(&t.messages_out, 30);
        Traffic::add(&t.published, 2);
        Traffic::add(&t.dropped_closed, 4);
        assert_eq!(
            app_totals(&app, 5),
            Totals {
                messages_in: 3.0,
                messages_out: 30.0,
                published: 2.0,
                dropped: 9.0,
            }
        );
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
        let apps =
            |a: f64, b: f64| BTreeMap::from([("1".to_owned(), at(a)), ("2".to_owned(), at(b))]);
        assert!(h.sample(t0, 0, at(0.0), apps(0.0, 0.0)).0.is_empty());
        // Too soon: not sampled.
        assert!(h
            .sample(t0 + STEP / 2, 1, at(100.0), apps(9.0, 9.0))
            .0
            .is_empty());
        let (rates, per_app) =
            h.sample(t0 + Duration::from_secs(2), 2000, at(10.0), apps(8.0, 2.0));
        assert_eq!(rates, vec![[2000.0, 5.0, 10.0, 0.0, 0.0]]);
        // Each app's rates come from its own totals.
        assert_eq!(per_app["1"], vec![[2000.0, 4.0, 8.0, 0.0, 0.0]]);
        assert_eq!(per_app["2"], vec![[2000.0, 1.0, 2.0, 0.0, 0.0]]);
        for i in 0..(HISTORY as u64 + 10) {
            h.sample(t0 + Duration::from_secs(3 + i), 0, at(10.0), apps(8.0, 2.0));
        }
        assert_eq!(h.samples.lock().unwrap().len(), HISTORY);
    }
}

//! One gateway node, socket-free: its apps, the Pusher protocol
//! ([`Gateway`]), the HTTP API ([`HttpApi`]) and the activity timeout
//! ([`Activity`]), all over one bus and one set of metrics.
//!
//! The parts do not name each other: each holds the shared [`Apps`], the
//! bus publisher and the metrics it needs, and this module builds them
//! together. The transport adapter (`handler.rs`) and the server wiring
//! (`server.rs`) put a node on sockets; tests and embedders drive it with
//! `realtime::pipe()` connections.
//!
//! # Buses
//!
//! [`Node::new`] delivers on the publishing thread ([`crate::LocalBus`]),
//! exactly as the server binary does without `--redis`: a publish is fanned
//! out to this node's subscribers before it returns (see `bus/` for the
//! order this keeps). [`Node::with_driver`] takes a `broadcasting` driver
//! (the server passes Redis in cluster mode; tests pass one Memory driver
//! to several nodes): an app's fan-outs then run on its subscription
//! thread, in publish order. [`Node::with_bus`] takes any [`Bus`].

use std::sync::{Arc, Mutex};

use broadcasting::Broadcaster;

use crate::activity::Activity;
use crate::app::Apps;
use crate::bus::{self, Attached, BroadcastBus, Bus, Publisher};
use crate::config::Settings;
use crate::connection::Clock;
use crate::dashboard::Dashboard;
use crate::error::Error;
use crate::gateway::{random_node_id, Gateway};
use crate::http_api::HttpApi;
use crate::metrics::{Metrics, Sample};
use crate::webhooks::{cluster::Decider, Delivery};

/// A gateway node; see the module docs.
#[derive(Debug)]
pub struct Node {
    id: u32,
    apps: Arc<Apps>,
    metrics: Arc<Metrics>,
    gateway: Arc<Gateway>,
    api: Arc<HttpApi>,
    activity: Arc<Activity>,
    attached: Mutex<Option<Attached>>,
    /// Webhooks: the cluster decision (with `--redis`) and the delivery.
    webhooks: Mutex<(Option<Decider>, Option<Delivery>)>,
}

impl Node {
    /// A node for `settings` delivering on the publishing thread
    /// ([`crate::LocalBus`]), as the server binary does without `--redis`.
    ///
    /// # Errors
    ///
    /// None with the local bus; the `Result` stays so that a node over a
    /// driver can be swapped in without touching callers.
    pub fn new(settings: &Settings) -> Result<Self, Error> {
        Ok(Self::with_bus(
            settings,
            random_node_id(),
            Arc::new(bus::LocalBus),
        ))
    }

    /// A node with this id publishing through `driver`, each app
    /// subscribed to its prefix on it. The driver is closed with the node.
    ///
    /// # Errors
    ///
    /// The driver refused a subscription.
    pub fn with_driver(
        settings: &Settings,
        id: u32,
        driver: Arc<dyn Broadcaster>,
    ) -> Result<Self, Error> {
        let node = Self::with_bus(
            settings,
            id,
            Arc::new(BroadcastBus::new(Arc::clone(&driver))),
        );
        let attached = bus::attach(node.apps.all(), driver)?;
        *node.attached.lock().unwrap_or_else(|p| p.into_inner()) = Some(attached);
        Ok(node)
    }

    /// A node with this id publishing through `bus`.
    pub fn with_bus(settings: &Settings, id: u32, bus: Arc<dyn Bus>) -> Self {
        let metrics = Arc::new(Metrics::with_allocator());
        let apps = Arc::new(Apps::new(settings, &id.to_string(), &metrics));
        let publisher = Publisher::new(bus, Arc::clone(&metrics));
        let clock = Clock::new();
        let gateway = Gateway::new(
            settings,
            Arc::clone(&apps),
            publisher.clone(),
            Arc::clone(&metrics),
            clock,
            id,
        );
        let dashboard = settings.dashboard_token.as_ref().map(|token| {
            Dashboard::new(
                token,
                Arc::clone(&apps),
                publisher.clone(),
                Arc::clone(&metrics),
                id.to_string(),
            )
        });
        let api = HttpApi::new(Arc::clone(&apps), publisher, Arc::clone(&metrics))
            .with_dashboard(dashboard);
        let activity = Activity::new(
            Arc::clone(&apps),
            Arc::clone(&metrics),
            clock,
            settings.activity_timeout,
        );
        let webhooks = start_webhooks(settings, &id.to_string(), &apps, &metrics);
        Self {
            id,
            apps,
            metrics,
            gateway: Arc::new(gateway),
            api: Arc::new(api),
            activity: Arc::new(activity),
            attached: Mutex::new(None),
            webhooks: Mutex::new(webhooks),
        }
    }

    /// This node's id: the first part of its socket ids, and its id in a
    /// cluster.
    pub fn id(&self) -> String {
        self.id.to_string()
    }

    /// Every app.
    pub fn apps(&self) -> &Apps {
        &self.apps
    }

    /// The Pusher protocol.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The HTTP API.
    pub fn api(&self) -> &Arc<HttpApi> {
        &self.api
    }

    /// The activity timeout.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// `/metrics`, rendered now.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(&self.apps.gauges())
    }

    /// Adds values read on every scrape.
    pub(crate) fn register_samples(
        &self,
        samples: impl Fn() -> Vec<Sample> + Send + Sync + 'static,
    ) {
        self.metrics.register_samples(samples);
    }

    /// Closes every Hub (every client), then the bus (after the Hubs: a
    /// cluster's presence leaves go out on it).
    pub fn close(&self) {
        self.apps.close_all();
        // After the Hubs: their last vacated/member_removed are queued.
        let (decider, delivery) = {
            let mut w = self.webhooks.lock().unwrap_or_else(|p| p.into_inner());
            (w.0.take(), w.1.take())
        };
        if let Some(mut d) = decider {
            d.close();
        }
        if let Some(d) = delivery {
            d.close();
        }
    }

    /// Cancels the bus subscriptions and closes the driver.
    pub(crate) fn close_bus(&self) {
        let attached = self
            .attached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(a) = attached {
            a.close();
        }
    }
}

/// Starts the webhook delivery when some app has a target (and, with
/// `--redis`, the cluster decision). A failure is logged: the node serves
/// without webhooks rather than not at all.
fn start_webhooks(
    settings: &Settings,
    node: &str,
    apps: &Arc<Apps>,
    metrics: &Arc<Metrics>,
) -> (Option<Decider>, Option<Delivery>) {
    if apps.all().iter().all(|a| a.webhooks().is_empty()) {
        return (None, None);
    }
    let decider = match &settings.redis {
        Some(url) => match Decider::start(url, &settings.redis_namespace, node, apps, metrics) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!(error = %e, "webhooks: cannot start the cluster decision; webhooks are off");
                return (None, None);
            }
        },
        None => None,
    };
    match Delivery::start(settings, apps, metrics, decider.as_ref()) {
        Ok(delivery) => (decider, delivery),
        Err(e) => {
            tracing::error!(error = %e, "webhooks: cannot start delivery; webhooks are off");
            (None, None)
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.close_bus();
    }
}

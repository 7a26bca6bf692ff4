//! The ingest role's publisher: takes the sources' events (the channel the analytics core reads
//! in a single process) and publishes each trade and quote to its partition's subject.
//!
//! Publishing is pipelined: up to [`IN_FLIGHT`] messages wait for JetStream's acknowledgement
//! while more are sent; acknowledgements are taken in order, and a message leaves the buffer only
//! once acknowledged. When a publish or an acknowledgement fails (a server down, the stream's
//! leader moving, a timeout), every unacknowledged message is sent again, in order, after a
//! backoff with jitter: those that had landed carry their message id and are dropped by the
//! stream's duplicate window (counted in `tickstream_cluster_duplicates_total`). The buffer holds
//! at most [`BUFFER`] messages; when it is full the publisher stops reading the channel, so the
//! sources wait — a replay slows, a live feed's frames wait in its socket — and nothing is
//! dropped (each wait counted in `tickstream_cluster_buffer_full_total`).
//!
//! Each trade carries the event-time clock as this process judges it (the same [`StreamClock`]
//! and lateness a single process applies), and every partition gets a clock message when a
//! source ends and whenever the clock moved without it ([`QUIET_TICK`]): see [`super::wire`].

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::mpsc;
use tokio_util::bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::deadlines::{StaleDeadlines, StaleRule};
use super::{partition, wire};
use crate::clock::{Admission, StreamClock};
use crate::health::FeedRegistry;
use crate::ingest::{LiveClock, QUIET_TICK};
use crate::metrics::Metrics;
use crate::model::{CoreEvent, FeedId, Timestamp};

/// Messages awaiting their acknowledgement at most.
pub const IN_FLIGHT: usize = 4096;
/// Messages held (sent or not) before the sources are made to wait.
pub const BUFFER: usize = 65_536;
/// The first pause after a failed publish; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

type AckFuture = Pin<
    Box<
        dyn Future<
                Output = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
            > + Send,
    >,
>;

/// A message to publish.
#[derive(Debug)]
struct Outgoing {
    subject: async_nats::Subject,
    payload: Bytes,
    id: Option<String>,
    /// The feed whose trade this is (counted when acknowledged).
    trade_of: Option<FeedId>,
    /// A source's end, acted on once this (its last clock message) is acknowledged.
    ended: Option<(FeedId, Option<String>)>,
}

/// The publisher task; see the module's documentation.
pub struct Publisher {
    js: jetstream::Context,
    partitions: u32,
    events: mpsc::Receiver<CoreEvent>,
    feeds: Arc<FeedRegistry>,
    metrics: Arc<Metrics>,
    clock: StreamClock,
    live_clock: Option<LiveClock>,
    /// The stream clock last sent to every partition.
    broadcast: Option<(Timestamp, Timestamp)>,
    /// When partitions must hear the clock for their `stale` rules.
    stale: StaleDeadlines,
    /// The cluster's `stale` rules as they change.
    stale_rules: Option<tokio::sync::watch::Receiver<Arc<[StaleRule]>>>,
    /// Unacknowledged messages, oldest first; the first `acks.len()` of them are sent.
    buffer: VecDeque<Outgoing>,
    acks: VecDeque<AckFuture>,
    /// When sending may resume after a failure.
    paused_until: Option<tokio::time::Instant>,
    backoff: Duration,
    scratch: Vec<u8>,
}

impl Publisher {
    /// A publisher of `events` to the stream's `partitions` partitions, judging lateness like a
    /// single process would (`allowed_lateness`, ns).
    pub fn new(
        js: jetstream::Context,
        partitions: u32,
        events: mpsc::Receiver<CoreEvent>,
        feeds: Arc<FeedRegistry>,
        metrics: Arc<Metrics>,
        allowed_lateness: i64,
    ) -> Self {
        Publisher {
            js,
            partitions,
            events,
            feeds,
            metrics,
            clock: StreamClock::new(allowed_lateness),
            live_clock: None,
            broadcast: None,
            stale: StaleDeadlines::default(),
            stale_rules: None,
            buffer: VecDeque::new(),
            acks: VecDeque::new(),
            paused_until: None,
            backoff: FIRST_BACKOFF,
            scratch: Vec::with_capacity(256),
        }
    }

    /// Moves a quiet market's clock with the live `feeds`' measured offsets (as the single
    /// process's analytics task does), telling every partition.
    pub fn with_live_clock(mut self, feeds: &[FeedId], allowed_lateness: i64) -> Self {
        if !feeds.is_empty() {
            self.live_clock = Some(LiveClock::new(feeds.iter().copied(), allowed_lateness));
        }
        self
    }

    /// Follows the cluster's `stale` rules, sending each partition the clock when one of them
    /// could fire there ([`super::deadlines`]).
    pub fn with_stale_rules(
        mut self,
        rules: tokio::sync::watch::Receiver<Arc<[StaleRule]>>,
    ) -> Self {
        self.stale_rules = Some(rules);
        self
    }

    /// Takes up the rules if they changed.
    fn refresh_stale_rules(&mut self) {
        if let Some(rules) = &mut self.stale_rules
            && rules.has_changed().unwrap_or(false)
        {
            let rules = Arc::clone(&rules.borrow_and_update());
            self.stale.set_rules(rules);
        }
    }

    /// Sends the clock to the partitions of the symbols whose `stale` deadlines it passed.
    fn stale_clock(&mut self) {
        if self.stale.is_idle() {
            return;
        }
        let Some(event) = self.clock.event_time() else {
            return;
        };
        // The clock a partition reads after this message (as `broadcast_clock` sends it).
        let now = self.clock.now().unwrap_or(event).max(event);
        let crossed = self.stale.crossed(now);
        if crossed.is_empty() {
            return;
        }
        let mut partitions: Vec<u32> = crossed
            .iter()
            .map(|symbol| partition::partition_of(symbol.as_str(), self.partitions))
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        self.send_clock(event, now, partitions);
    }

    /// Queues a clock message (`event`, `now`) to each of `partitions`.
    fn send_clock(
        &mut self,
        event: Timestamp,
        now: Timestamp,
        partitions: impl IntoIterator<Item = u32>,
    ) {
        self.scratch.clear();
        wire::encode_clock(event, now, &mut self.scratch);
        let payload = Bytes::copy_from_slice(&self.scratch);
        for p in partitions {
            self.buffer.push_back(Outgoing {
                subject: partition::clock_subject(p).into(),
                payload: payload.clone(),
                id: None,
                trade_of: None,
                ended: None,
            });
        }
    }

    fn feed_name(&self, feed: FeedId) -> String {
        self.feeds
            .get(feed)
            .map_or_else(|| format!("feed-{}", feed.0), |f| f.name().to_string())
    }

    /// Encodes an event into the buffer.
    fn enqueue(&mut self, event: CoreEvent) {
        self.refresh_stale_rules();
        match event {
            CoreEvent::Trades(trades) | CoreEvent::Recovered(trades) => {
                let mut name: Option<(FeedId, String)> = None;
                for trade in &trades {
                    if let Some(clock) = &mut self.live_clock {
                        clock.observe(trade);
                    }
                    if self.clock.observe(trade.exchange_ts) != Admission::Late {
                        self.stale.on_trade(&trade.symbol, trade.exchange_ts);
                    }
                    // A late trade is sent all the same: the partition counts it late as the
                    // single process would (its clock is the one sent).
                    let clock = self.clock.event_time().unwrap_or(trade.exchange_ts);
                    let feed = match &name {
                        Some((id, feed)) if *id == trade.feed => feed.clone(),
                        _ => {
                            let feed = self.feed_name(trade.feed);
                            name = Some((trade.feed, feed.clone()));
                            feed
                        }
                    };
                    self.scratch.clear();
                    wire::encode_trade(trade, &feed, clock, &mut self.scratch);
                    let p = partition::partition_of(trade.symbol.as_str(), self.partitions);
                    self.buffer.push_back(Outgoing {
                        subject: partition::subject(p, trade.symbol.as_str()).into(),
                        payload: Bytes::copy_from_slice(&self.scratch),
                        id: wire::message_id(&feed, trade.symbol.as_str(), trade.trade_id),
                        trade_of: Some(trade.feed),
                        ended: None,
                    });
                    self.stale_clock();
                }
            }
            CoreEvent::Quotes(quotes) => {
                for quote in &quotes {
                    let feed = self.feed_name(quote.feed);
                    self.scratch.clear();
                    wire::encode_quote(quote, &feed, &mut self.scratch);
                    let p = partition::partition_of(quote.symbol.as_str(), self.partitions);
                    self.buffer.push_back(Outgoing {
                        subject: partition::subject(p, quote.symbol.as_str()).into(),
                        payload: Bytes::copy_from_slice(&self.scratch),
                        id: None,
                        trade_of: None,
                        ended: None,
                    });
                }
            }
            CoreEvent::SourceEnded { feed, error } => {
                self.broadcast_clock(true);
                match self.buffer.back_mut() {
                    Some(last) if last.trade_of.is_none() && last.ended.is_none() => {
                        last.ended = Some((feed, error));
                    }
                    _ => self.finish_feed(feed, error),
                }
            }
            // A node's events; an ingest never receives them.
            CoreEvent::Clocked { .. } | CoreEvent::Clock { .. } => {}
        }
        self.metrics
            .cluster_buffered
            .set(i64::try_from(self.buffer.len()).unwrap_or(i64::MAX));
    }

    /// Queues a clock message to every partition when the clocks moved since the last one (or
    /// always, with `force`).
    fn broadcast_clock(&mut self, force: bool) {
        let Some(event) = self.clock.event_time() else {
            return;
        };
        let now = self.clock.now().unwrap_or(event).max(event);
        if !force && self.broadcast == Some((event, now)) {
            return;
        }
        self.broadcast = Some((event, now));
        // Every partition hears this clock: what it passed needs no message of its own (the
        // cooldowns it may start are noted).
        let _ = self.stale.crossed(now);
        self.send_clock(event, now, 0..self.partitions);
    }

    /// A quiet live market: moves the stream clock to the venues' estimated time.
    fn quiet_tick(&mut self) {
        let estimate = self
            .live_clock
            .as_ref()
            .and_then(|clock| clock.estimate(crate::model::wall_clock_now()));
        if let Some(estimate) = estimate
            && self.clock.now().is_some_and(|now| estimate > now)
        {
            self.clock.advance_to(estimate);
        }
        self.broadcast_clock(false);
    }

    fn finish_feed(&self, feed: FeedId, error: Option<String>) {
        let Some(status) = self.feeds.get(feed) else {
            return;
        };
        match error {
            None => {
                status.set_finished();
                tracing::info!(
                    feed = status.name(),
                    trades = status.trades.get(),
                    "source finished; every trade of it is acknowledged by the stream"
                );
            }
            Some(message) => {
                tracing::error!(feed = status.name(), error = %message, "source failed");
                status.set_failed(message);
            }
        }
    }

    /// Sends buffered messages while there is room in flight.
    async fn send(&mut self) {
        while self.acks.len() < IN_FLIGHT && self.acks.len() < self.buffer.len() {
            if self.paused_until.is_some() {
                return;
            }
            let Some(message) = self.buffer.get(self.acks.len()) else {
                return;
            };
            let mut publish =
                jetstream::message::PublishMessage::build().payload(message.payload.clone());
            if let Some(id) = &message.id {
                publish = publish.message_id(id);
            }
            match self.js.send_publish(message.subject.clone(), publish).await {
                Ok(ack) => self.acks.push_back(ack.into_future()),
                Err(error) => {
                    self.failed(&error.to_string());
                    return;
                }
            }
        }
    }

    /// A publish or acknowledgement failed: everything in flight is sent again after a pause.
    fn failed(&mut self, error: &str) {
        let resent = self.acks.len() as u64;
        self.acks.clear();
        self.metrics.cluster_resent.inc_by(resent);
        let jitter = self.backoff.mul_f64(fastrand::f64() * 0.5);
        let pause = self.backoff + jitter;
        tracing::warn!(
            %error,
            unacknowledged = self.buffer.len(),
            retry_in = ?pause,
            "publishing to JetStream failed; resending what is unacknowledged"
        );
        self.paused_until = Some(tokio::time::Instant::now() + pause);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// The oldest message was acknowledged.
    fn acknowledged(&mut self, ack: &jetstream::publish::PublishAck) {
        self.backoff = FIRST_BACKOFF;
        let Some(message) = self.buffer.pop_front() else {
            return;
        };
        self.metrics.cluster_published.inc();
        if ack.duplicate {
            self.metrics.cluster_duplicates.inc();
        }
        if let Some(feed) = message.trade_of
            && let Some(status) = self.feeds.get(feed)
        {
            status.trades.inc();
        }
        if let Some((feed, error)) = message.ended {
            self.finish_feed(feed, error);
        }
        self.metrics
            .cluster_buffered
            .set(i64::try_from(self.buffer.len()).unwrap_or(i64::MAX));
    }

    /// Runs until the sources are done and every message is acknowledged, or — after `cancel` —
    /// until the sources have stopped and what they sent is acknowledged (bounded by the
    /// caller's drain deadline: what is left then is lost with the process, and said).
    #[tracing::instrument(name = "publisher", skip_all)]
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut quiet = tokio::time::interval(QUIET_TICK);
        quiet.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut closed = false;
        let mut cancelled = false;
        let mut full_counted = false;
        loop {
            if closed && self.buffer.is_empty() {
                break;
            }
            self.send().await;
            let room = self.buffer.len() < BUFFER;
            if !room && !full_counted {
                self.metrics.cluster_buffer_full.inc();
            }
            full_counted = !room;
            let paused = self.paused_until;
            let step = {
                let acks = &mut self.acks;
                let events = &mut self.events;
                tokio::select! {
                    biased;
                    result = async {
                        match acks.front_mut() {
                            Some(ack) => ack.await,
                            None => std::future::pending().await,
                        }
                    } => Step::Acknowledged(result),
                    () = async {
                        match paused {
                            Some(until) => tokio::time::sleep_until(until).await,
                            None => std::future::pending().await,
                        }
                    } => Step::Resume,
                    event = events.recv(), if room && !closed => Step::Event(event),
                    _ = quiet.tick() => Step::Quiet,
                    () = cancel.cancelled(), if !cancelled => Step::Cancelled,
                }
            };
            match step {
                Step::Acknowledged(result) => {
                    self.acks.pop_front();
                    match result {
                        Ok(ack) => self.acknowledged(&ack),
                        Err(error) => self.failed(&error.to_string()),
                    }
                }
                Step::Resume => self.paused_until = None,
                Step::Event(Some(event)) => {
                    self.enqueue(event);
                    // Take what else is ready in one go.
                    while self.buffer.len() < BUFFER {
                        match self.events.try_recv() {
                            Ok(event) => self.enqueue(event),
                            Err(_) => break,
                        }
                    }
                }
                Step::Event(None) => {
                    closed = true;
                    self.broadcast_clock(true);
                }
                Step::Quiet => self.quiet_tick(),
                // Keep draining: the sources stop and close the channel.
                Step::Cancelled => cancelled = true,
            }
        }
        tracing::debug!("publisher stopped: everything acknowledged");
    }
}

/// What woke the publisher.
enum Step {
    Acknowledged(Result<jetstream::publish::PublishAck, jetstream::context::PublishError>),
    Resume,
    Event(Option<CoreEvent>),
    Quiet,
    Cancelled,
}

//! The seam every venue plugs into: the [`Venue`] trait (the client side: where to connect, what
//! to send, how long silence may last, how to read a frame) and [`VenueServer`] (the venue's
//! side of one connection, which the mock exchange speaks).
//!
//! A venue lives in one folder of [`crate::feeds`] with both sides; [`Provider`] is a handle to
//! one, and [`crate::feeds::VENUES`] lists the ones configuration can name. Adding a venue is one
//! folder and one line in that list; a venue from outside the crate needs only
//! [`Provider::new`].

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat};
use tokio_tungstenite::tungstenite::Message;

use crate::feeds::event::{FeedEvent, FrameError, ParseContext};
use crate::model::{Side, Timestamp};
use crate::secret::Secret;

/// A market-data venue's protocol, client side (what the connector needs) and server side (what
/// the mock exchange needs).
pub trait Venue: Send + Sync + 'static {
    /// The name in configuration, in `/v1/feeds` and in raw-frame recordings.
    fn name(&self) -> &'static str;

    /// Other names configuration accepts (lower case).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// The venue's public endpoint.
    fn default_url(&self) -> &'static str;

    /// Channels subscribed when none are configured.
    fn default_channels(&self) -> &'static [&'static str];

    /// The environment variables that hold the API key and secret, for venues that need them.
    fn credentials_env(&self) -> CredentialsEnv {
        CredentialsEnv::default()
    }

    /// The URL to connect to, from the configured base URL.
    fn connect_url(&self, base: &str, _credentials: Option<&Credentials>) -> String {
        base.to_string()
    }

    /// The text frames sent after connecting: authentication and subscriptions.
    fn handshake(&self, subscription: &Subscription<'_>) -> Vec<String>;

    /// Whether the venue acknowledges subscriptions (otherwise the feed is live once they are
    /// sent).
    fn acknowledges(&self) -> bool {
        true
    }

    /// How often the client must send an application-level ping, if the venue wants one.
    fn app_ping_every(&self) -> Option<Duration> {
        None
    }

    /// The application-level ping with request id `id`.
    fn app_ping(&self, _id: u64) -> Option<String> {
        None
    }

    /// Silence after which a connection is considered dead.
    fn stale_after(&self) -> Duration;

    /// Whether trade ids are consecutive per symbol (so a jump is a gap).
    fn sequential_trade_ids(&self) -> bool {
        true
    }

    /// Parses one text frame into `out`.
    fn parse(
        &self,
        text: &str,
        ctx: &mut ParseContext,
        out: &mut Vec<FeedEvent>,
    ) -> Result<(), FrameError>;

    /// The venue's side of one new connection, for the mock exchange.
    fn server(&self) -> Box<dyn VenueServer>;
}

/// A handle to a [`Venue`]: small, `Copy`, compared and shown by name.
#[derive(Clone, Copy)]
pub struct Provider(&'static dyn Venue);

impl Provider {
    /// A handle to `venue` (a venue from outside the crate included).
    pub const fn new(venue: &'static dyn Venue) -> Self {
        Provider(venue)
    }

    /// The registered venue called `name` (or one of its aliases), ignoring case.
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        crate::feeds::VENUES
            .into_iter()
            .find(|provider| provider.name() == name || provider.aliases().contains(&&*name))
    }

    /// The names [`from_name`](Self::from_name) knows, for error messages: `binance, …`.
    pub fn known_names() -> String {
        crate::feeds::VENUES
            .map(|provider| provider.name())
            .join(", ")
    }

    /// The venue.
    pub fn venue(self) -> &'static dyn Venue {
        self.0
    }
}

impl std::ops::Deref for Provider {
    type Target = dyn Venue;

    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl PartialEq for Provider {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

impl Eq for Provider {}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Provider({})", self.0.name())
    }
}

/// The environment variables a venue reads its credentials from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CredentialsEnv {
    /// The API key (or token).
    pub key: Option<&'static str>,
    /// The API secret.
    pub secret: Option<&'static str>,
}

/// A feed's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// API key or token.
    pub key: Secret,
    /// API secret, for providers that have one.
    pub secret: Option<Secret>,
}

/// What one connection subscribes to.
#[derive(Debug, Clone, Copy)]
pub struct Subscription<'a> {
    /// Symbols as the venue spells them.
    pub symbols: &'a [String],
    /// Channels to subscribe.
    pub channels: &'a [String],
    /// The feed's credentials, if any.
    pub credentials: Option<&'a Credentials>,
}

impl Subscription<'_> {
    /// The API key, or `""` without credentials.
    pub fn key(&self) -> &str {
        self.credentials.map_or("", |c| c.key.expose())
    }

    /// The API secret, or `""` without one.
    pub fn secret(&self) -> &str {
        self.credentials
            .and_then(|c| c.secret.as_ref())
            .map_or("", Secret::expose)
    }
}

/// The venue's side of one connection to the mock exchange: answers the client's requests,
/// renders trades and keepalives in the venue's format. What every venue shares (pacing, faults,
/// the tape) is the mock exchange's.
pub trait VenueServer: Send {
    /// Sent as soon as the connection opens, before any request.
    fn greeting(&mut self) -> Option<String> {
        None
    }

    /// Answers one client request; subscriptions add to `session.symbols`.
    fn request(
        &mut self,
        text: &str,
        session: &mut ServerSession,
    ) -> Result<Vec<String>, BadRequest>;

    /// One trade as the venue's frame.
    fn trade(&mut self, trade: &ServedTrade<'_>) -> String;

    /// The keepalive messages due now.
    fn keepalives(&mut self, session: &ServerSession) -> Vec<Message>;

    /// How often keepalives are due, unless the mock is told otherwise.
    fn keepalive_every(&self) -> Duration;
}

/// What every venue's server side shares about one connection.
#[derive(Debug, Default)]
pub struct ServerSession {
    /// Symbols (lower case) whose trades are wanted.
    pub symbols: HashSet<String>,
    /// Refuse every authentication (venues that authenticate).
    pub reject_auth: bool,
    /// Close the connection once the replies are sent.
    pub closing: bool,
}

/// A trade the mock exchange serves, with its time and id already moved for the current pass.
#[derive(Debug, Clone, Copy)]
pub struct ServedTrade<'a> {
    /// The symbol.
    pub symbol: &'a str,
    /// Price.
    pub price: f64,
    /// Size.
    pub size: f64,
    /// The taker side, when known.
    pub side: Option<Side>,
    /// Event time, nanoseconds.
    pub ts: Timestamp,
    /// The trade id.
    pub id: u64,
}

/// A client request the venue's server does not understand (an excerpt of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected request: {0}")]
pub struct BadRequest(pub String);

impl BadRequest {
    /// The request, cut to an excerpt.
    pub fn excerpt(text: &str) -> Self {
        BadRequest(text.chars().take(200).collect())
    }
}

/// RFC 3339 with microseconds, UTC: how the venues that use text times write them.
pub fn rfc3339_micros(ts: Timestamp) -> String {
    DateTime::from_timestamp_nanos(ts).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Runs `venue`'s parser over `frames` in order with one context, collecting every event: the
/// helper behind each venue's table-driven parser tests.
pub fn parse_frames(venue: &dyn Venue, frames: &[&str]) -> Result<Vec<FeedEvent>, FrameError> {
    let mut ctx = ParseContext::new(crate::model::FeedId(0));
    let mut out = Vec::new();
    for frame in frames {
        venue.parse(frame, &mut ctx, &mut out)?;
    }
    Ok(out)
}

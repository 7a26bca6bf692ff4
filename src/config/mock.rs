//! The `mock-exchange` subcommand's options, validated.

use std::net::SocketAddr;

use super::{MockExchangeArgs, parse_duration, parse_listen};
use crate::feeds::Provider;
use crate::replay::Speed;

/// The `mock-exchange` subcommand's options, validated.
#[derive(Debug)]
pub struct MockExchangeSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The recording to serve (trades, or raw frames served verbatim).
    pub source: crate::replay::ReplaySource,
    /// How to serve it.
    pub options: crate::mock_exchange::MockOptions,
}

impl MockExchangeArgs {
    /// Validates the options.
    pub fn settings(self) -> anyhow::Result<MockExchangeSettings> {
        use anyhow::Context;
        let args = self;
        let provider = Provider::from_name(&args.provider).with_context(|| {
            format!(
                "unknown provider {:?} (known: {})",
                args.provider,
                Provider::known_names()
            )
        })?;
        let speed: Speed = args.speed.parse()?;
        let listen = parse_listen(&args.listen)?;
        let source = crate::replay::ReplaySource::from_path(&args.file)?;
        let duration = |name: &'static str, text: &str| {
            parse_duration(name, text).map_err(anyhow::Error::from)
        };
        let max_pause = args
            .max_pause
            .as_deref()
            .map(|text| duration("max_pause", text))
            .transpose()?;
        let stall = args
            .stall
            .as_deref()
            .map(|text| {
                let (every, pause) = text
                    .split_once(':')
                    .with_context(|| format!("--stall wants N:DURATION, got {text:?}"))?;
                let every: u64 = every
                    .parse()
                    .with_context(|| format!("--stall: {every:?} is not a frame count"))?;
                anyhow::Ok((every, duration("stall", pause)?))
            })
            .transpose()?;
        let options = crate::mock_exchange::MockOptions {
            provider,
            speed,
            repeat: args.repeat,
            max_pause,
            shared_tape: args.shared_tape,
            faults: crate::mock_exchange::MockFaults {
                drop_every: args.drop_every,
                stall,
                garbage_every: args.garbage_every,
                refuse_for: args
                    .refuse_for
                    .as_deref()
                    .map(|text| duration("refuse_for", text))
                    .transpose()?,
                resend_on_connect: args.resend_on_connect,
            },
            ..crate::mock_exchange::MockOptions::default()
        };
        Ok(MockExchangeSettings {
            listen,
            source,
            options,
        })
    }
}

//! Live feeds as configured: `provider:SYMBOL,SYMBOL[@url]` on the command line or `[[feeds]]`
//! tables in the file, with credentials read from the environment.

use super::file::FileFeed;
use super::{ConfigError, invalid};
use crate::feeds::connector::FeedSpec;
use crate::feeds::{Credentials, Provider};
use crate::secret::Secret;

fn provider(name: &str) -> Result<Provider, ConfigError> {
    Provider::from_name(name).ok_or_else(|| {
        invalid(
            "feed",
            format!(
                "unknown provider {name:?} (known: {})",
                Provider::known_names()
            ),
        )
    })
}

/// Reads a feed's API key from the environment, if the provider needs one.
fn credentials(
    provider: Provider,
    key_env: Option<String>,
    secret_env: Option<String>,
) -> Result<Option<Credentials>, ConfigError> {
    let read = |what: &str, variable: String| match std::env::var(&variable) {
        Ok(value) if !value.trim().is_empty() => Ok(Secret::new(value.trim().to_string())),
        _ => Err(invalid(
            "feed",
            format!(
                "{} needs an API {what}: set the environment variable {variable}",
                provider.name()
            ),
        )),
    };
    let Some(key_variable) = key_env.or_else(|| provider.credentials_env().key.map(str::to_string))
    else {
        return Ok(None);
    };
    let key = read("key", key_variable)?;
    let secret = match secret_env.or_else(|| provider.credentials_env().secret.map(str::to_string))
    {
        Some(variable) => Some(read("secret", variable)?),
        None => None,
    };
    Ok(Some(Credentials { key, secret }))
}

fn feed_spec(
    provider: Provider,
    url: Option<String>,
    symbols: Vec<String>,
    channels: Option<Vec<String>>,
    key_env: Option<String>,
    secret_env: Option<String>,
) -> Result<FeedSpec, ConfigError> {
    let symbols: Vec<String> = symbols
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if symbols.is_empty() {
        return Err(invalid("feed", "a feed needs at least one symbol"));
    }
    let url = url.unwrap_or_else(|| provider.default_url().to_string());
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(invalid(
            "feed",
            format!("{url:?} is not a ws:// or wss:// URL"),
        ));
    }
    Ok(FeedSpec {
        provider,
        url,
        symbols,
        channels: channels.unwrap_or_else(|| {
            provider
                .default_channels()
                .iter()
                .map(|c| c.to_string())
                .collect()
        }),
        credentials: credentials(provider, key_env, secret_env)?,
    })
}

pub(super) fn feed_from_file(feed: FileFeed) -> Result<FeedSpec, ConfigError> {
    feed_spec(
        provider(&feed.provider)?,
        feed.url,
        feed.symbols,
        feed.channels,
        feed.key_env,
        feed.secret_env,
    )
}

/// Parses `provider:SYMBOL,SYMBOL[@url]`.
pub fn parse_feed(text: &str) -> Result<FeedSpec, ConfigError> {
    let (name, rest) = text.split_once(':').ok_or_else(|| {
        invalid(
            "feed",
            format!("{text:?}: expected provider:SYMBOL,SYMBOL[@url]"),
        )
    })?;
    let (symbols, url) = match rest.split_once('@') {
        Some((symbols, url)) => (symbols, Some(url.to_string())),
        None => (rest, None),
    };
    let symbols = symbols.split(',').map(str::to_string).collect();
    feed_spec(provider(name)?, url, symbols, None, None, None)
}

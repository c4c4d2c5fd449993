//! The Redis side's settings: where the stream is, how it is read, claimed and dead-lettered.

use std::path::PathBuf;
use std::time::Duration;

use crate::config_values::{check_name, millis, seconds, ConfigError};

/// Whether the processor trims the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StreamTrim {
    /// Never.
    Off,
    /// To what every group has acknowledged, beyond the keep window.
    Acked,
}

/// Where Redis is: every command that talks to Redis takes these.
#[derive(Clone, Debug, clap::Args)]
pub struct RedisLink {
    /// Redis server (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS).
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "REDIS_URL",
        value_name = "URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub url: String,

    /// PEM file of the CA(s) trusted for Redis's certificate (`rediss://`), instead of the
    /// system's roots.
    #[arg(
        id = "redis_ca_file",
        long = "redis-ca-file",
        env = "REDIS_CA_FILE",
        value_name = "FILE"
    )]
    pub ca_file: Option<PathBuf>,
}

impl RedisLink {
    /// The URL parses, is not `#insecure`, and the CA file holds certificates.
    pub fn validate(&self) -> Result<(), ConfigError> {
        redis::Client::open(self.url.as_str()).map_err(|e| {
            ConfigError::new(
                "REDIS_URL",
                format!("not a Redis URL ({})", crate::redact::redact_error(&e)),
            )
        })?;
        if self.url.contains("#insecure") {
            return Err(ConfigError::new(
                "REDIS_URL",
                "#insecure (TLS without verifying the server) is not supported; trust a private CA with REDIS_CA_FILE instead",
            ));
        }
        if let Some(path) = &self.ca_file {
            crate::tls::read_ca_file(path)
                .map_err(|e| ConfigError::new("REDIS_CA_FILE", e.to_string()))?;
        }
        Ok(())
    }

    /// The client for this server (see [`super::connect::client`]).
    pub fn client(&self) -> Result<redis::Client, super::RedisError> {
        super::connect::client(&self.url, self.ca_file.as_deref())
    }
}

/// The stream the ingestion service appends positions to.
#[derive(Clone, Debug, clap::Args)]
pub struct StreamKey {
    /// The stream the ingestion service appends positions to.
    #[arg(
        id = "stream_key",
        long = "stream-key",
        env = "STREAM_KEY",
        value_name = "KEY",
        default_value = "telemetry:t"
    )]
    pub key: String,
}

impl StreamKey {
    /// The key is a usable name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_name("STREAM_KEY", &self.key)
    }
}

/// The stream refused entries are moved to.
#[derive(Clone, Debug, clap::Args)]
pub struct DeadLetterKey {
    /// Stream that refused entries are moved to. Default: `<STREAM_KEY>:dead`.
    #[arg(
        id = "dead_letter_stream",
        long = "dead-letter-stream",
        env = "DEAD_LETTER_STREAM",
        value_name = "KEY"
    )]
    pub key: Option<String>,
}

impl DeadLetterKey {
    /// The key for the positions on `stream`.
    pub fn resolve(&self, stream: &StreamKey) -> String {
        self.key
            .clone()
            .unwrap_or_else(|| format!("{}:dead", stream.key))
    }

    /// A usable name that differs from `stream`'s.
    pub fn validate(&self, stream: &StreamKey) -> Result<(), ConfigError> {
        if let Some(key) = &self.key {
            check_name("DEAD_LETTER_STREAM", key)?;
        }
        if self.resolve(stream) == stream.key {
            return Err(ConfigError::new(
                "DEAD_LETTER_STREAM",
                "must differ from STREAM_KEY",
            ));
        }
        Ok(())
    }
}

/// Redis, the stream and the consumer group.
#[derive(Clone, Debug, clap::Args)]
pub struct RedisConfig {
    /// The server.
    #[command(flatten)]
    pub link: RedisLink,

    /// The stream.
    #[command(flatten)]
    pub stream: StreamKey,

    /// The dead-letter stream.
    #[command(flatten)]
    pub dead_letters: DeadLetterKey,

    /// Consumer group shared by every replica.
    #[arg(long, env = "CONSUMER_GROUP", default_value = "processor")]
    pub consumer_group: String,

    /// This replica's consumer name; worker N reads as `<CONSUMER_NAME>-<N>`. Must be stable
    /// across restarts so pending entries are resumed. Default: the host name.
    #[arg(long = "consumer-name", env = "CONSUMER_NAME")]
    pub consumer_name: Option<String>,

    /// Where a newly created group starts reading (`0`: the whole backlog; `$`: only new entries).
    #[arg(long, env = "GROUP_START_ID", default_value = "0")]
    pub group_start_id: String,

    /// Entries per XREADGROUP call.
    #[arg(long, env = "READ_COUNT", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub read_count: u32,

    /// How long one XREADGROUP waits for new entries, in milliseconds (also bounds how long
    /// shutdown waits for the read in progress).
    #[arg(long = "read-block-ms", env = "READ_BLOCK_MS", default_value = "1000", value_parser = millis(1, 60_000))]
    pub read_block: Duration,

    /// How often each reader takes over entries idle in other consumers, in milliseconds.
    #[arg(long = "claim-interval-ms", env = "CLAIM_INTERVAL_MS", default_value = "10000", value_parser = millis(100, 3_600_000))]
    pub claim_interval: Duration,

    /// Entries pending longer than this in any consumer are taken over (XAUTOCLAIM), in
    /// milliseconds. Keep it well above the time a commit can take.
    #[arg(long = "claim-min-idle-ms", env = "CLAIM_MIN_IDLE_MS", default_value = "60000", value_parser = millis(100, 86_400_000))]
    pub claim_min_idle: Duration,

    /// `acked`: trim the stream, every second, to what every consumer group on it still needs
    /// (its oldest pending entry, or its last delivered one), keeping at least the last
    /// `STREAM_TRIM_KEEP_SECS`; `off`: never trim (the producer's `MAXLEN`, or nobody, does).
    #[arg(long, env = "STREAM_TRIM", value_enum, default_value_t = StreamTrim::Off)]
    pub stream_trim: StreamTrim,

    /// With `STREAM_TRIM=acked`, entries younger than this many seconds are never trimmed,
    /// acknowledged or not (a window to replay from, and to inspect).
    #[arg(long = "stream-trim-keep-secs", env = "STREAM_TRIM_KEEP_SECS", default_value = "3600", value_parser = seconds(0, 31_536_000))]
    pub stream_trim_keep: Duration,

    /// A consumer of the group with nothing pending that has been idle this long, in seconds, is
    /// deleted by whichever replica sees it (a replica that went away for good: a rolling
    /// deploy's old pods); a live one merely idle is recreated by its next read.
    #[arg(long = "consumer-sweep-idle-secs", env = "CONSUMER_SWEEP_IDLE_SECS", default_value = "86400", value_parser = seconds(1, 31_536_000))]
    pub consumer_sweep_idle: Duration,

    /// An entry delivered this many times without being acknowledged goes to the dead-letter
    /// stream with reason `max deliveries exceeded`.
    #[arg(long, env = "MAX_DELIVERIES", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_deliveries: u64,
}

impl RedisConfig {
    /// Checks what the argument parser cannot: the URL parses, names are usable, the CA file
    /// holds certificates, the group's start id is a stream id.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.link.validate()?;
        self.stream.validate()?;
        self.dead_letters.validate(&self.stream)?;
        check_name("CONSUMER_GROUP", &self.consumer_group)?;
        check_name("GROUP_START_ID", &self.group_start_id)?;
        if let Some(name) = &self.consumer_name {
            check_name("CONSUMER_NAME", name)?;
        }
        if !valid_start_id(&self.group_start_id) {
            return Err(ConfigError::new(
                "GROUP_START_ID",
                format!(
                    "{:?} is not a stream id (`0`, `$` or `<ms>-<seq>`)",
                    self.group_start_id
                ),
            ));
        }
        Ok(())
    }

    /// The dead-letter stream key.
    pub fn dead_letter_stream(&self) -> String {
        self.dead_letters.resolve(&self.stream)
    }

    /// This replica's consumer name (the host name unless set).
    pub fn consumer_name(&self) -> String {
        self.consumer_name.clone().unwrap_or_else(host_name)
    }
}

fn valid_start_id(id: &str) -> bool {
    if id == "$" {
        return true;
    }
    let mut parts = id.splitn(2, '-');
    let ms_ok = parts
        .next()
        .is_some_and(|ms| !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()));
    let seq_ok = parts
        .next()
        .is_none_or(|seq| !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()));
    ms_ok && seq_ok
}

/// The host name, as the kernel reports it (stable across restarts of a pod or a host).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "processor".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ids() {
        for ok in ["0", "$", "1700000000000-0", "5"] {
            assert!(valid_start_id(ok), "{ok}");
        }
        for bad in ["", "-", "1-", "a-1", ">"] {
            assert!(!valid_start_id(bad), "{bad}");
        }
    }
}

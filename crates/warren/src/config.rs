//! Typed, validated configuration shared by every subcommand.
//!
//! Each command's `Args` (assembled by `cli.rs`) turn flags and environment variables into
//! these types once, before any network call; anything invalid becomes a [`ConfigError`],
//! which `main` prints as one line and exits with code 2.

use std::fmt;
use std::time::Duration;

use url::Url;

/// A configuration value that cannot be used; printed as one line, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// Builds an error from anything printable.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The broker's address, credentials included: one URL, or several (the nodes of a cluster).
///
/// `AMQP_URL` may list a cluster's nodes separated by commas; the connection helper tries them
/// in turn. `Display` and `Debug` redact the password of every one, so the value can be logged
/// as it is; only [`AmqpUrl::expose`] gives the full URLs, and only the connection helper (and
/// the code handing `AMQP_URL` to a child process) calls it.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUrl {
    /// One URL per node, in the order given.
    nodes: Vec<Url>,
    /// `nodes` joined with commas, as `AMQP_URL` takes them.
    exposed: String,
}

impl AmqpUrl {
    /// Parses and checks a full `amqp://user:pass@host:port/vhost` URL, or several separated by
    /// commas (a comma inside a password must then be written `%2C`).
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
        let many = parts.len() > 1;
        let nodes = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                parse_one(part).map_err(|e| {
                    if many {
                        // Which address, by position: the text itself may hold a password.
                        ConfigError::new(format!("{} (address {} of {})", e.0, i + 1, parts.len()))
                    } else {
                        e
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_nodes(nodes))
    }

    fn from_nodes(nodes: Vec<Url>) -> Self {
        let exposed = nodes.iter().map(Url::as_str).collect::<Vec<_>>().join(",");
        Self { nodes, exposed }
    }

    /// Builds the URL from the original application's separate settings (`RABBIT_HOST`, `RABBIT_PORT`, ...).
    pub fn from_parts(
        host: &str,
        port: u16,
        username: &str,
        password: &str,
        vhost: &str,
    ) -> Result<Self, ConfigError> {
        if host.is_empty() || host.contains(['/', '@', ' ', '?', '#', ',']) {
            return Err(ConfigError::new(format!(
                "RABBIT_HOST {host:?} is not a host name or address"
            )));
        }
        if port == 0 {
            return Err(ConfigError::new("RABBIT_PORT must be between 1 and 65535"));
        }
        if username.is_empty() {
            return Err(ConfigError::new("RABBIT_USERNAME must not be empty"));
        }
        let mut url = Url::parse(&format!("amqp://{host}:{port}/"))
            .map_err(|e| ConfigError::new(format!("RABBIT_HOST {host:?} is not usable ({e})")))?;
        url.set_username(username)
            .and_then(|()| url.set_password(Some(password)))
            .map_err(|()| {
                ConfigError::new("RABBIT_USERNAME or RABBIT_PASSWORD cannot be put in a URL")
            })?;
        // The vhost is one path segment: "/" (the default vhost) becomes "%2f".
        url.path_segments_mut()
            .map_err(|()| ConfigError::new("cannot set the vhost"))?
            .clear()
            .push(vhost);
        // The URL encoder leaves commas as they are, but a comma separates the nodes of
        // AMQP_URL: encode them, so this URL survives being handed on as AMQP_URL.
        if url.as_str().contains(',') {
            url = Url::parse(&url.as_str().replace(',', "%2C"))
                .map_err(|e| ConfigError::new(format!("cannot encode the broker URL ({e})")))?;
        }
        Ok(Self::from_nodes(vec![url]))
    }

    /// The full URL (all of them, comma-separated), passwords included. Hand it to the AMQP
    /// client or to a child's `AMQP_URL` only.
    pub fn expose(&self) -> &str {
        &self.exposed
    }

    /// Each node's URL on its own, in the order given.
    pub fn nodes(&self) -> Vec<AmqpUrl> {
        self.nodes
            .iter()
            .map(|url| Self::from_nodes(vec![url.clone()]))
            .collect()
    }

    /// The virtual host, as the broker names it (the URL's path, percent-decoded; `/` when the
    /// path is empty). A cluster's URLs name one vhost: the first node's is taken.
    pub fn vhost(&self) -> String {
        let path = self.nodes.first().map(Url::path).unwrap_or_default();
        let segment = path.strip_prefix('/').unwrap_or(path);
        if segment.is_empty() {
            return "/".to_owned();
        }
        url::form_urlencoded::parse(format!("v={}", segment.replace('+', "%2B")).as_bytes())
            .next()
            .map_or_else(|| "/".to_owned(), |(_, v)| v.into_owned())
    }

    /// `host:port` of the broker (of each node, comma-separated).
    pub fn authority(&self) -> String {
        self.nodes
            .iter()
            .map(|url| {
                format!(
                    "{}:{}",
                    url.host_str().unwrap_or_default(),
                    url.port().unwrap_or(5672)
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Parses and checks one node's URL.
fn parse_one(raw: &str) -> Result<Url, ConfigError> {
    // The error must not echo `raw`: it may hold a password.
    let url = Url::parse(raw)
        .map_err(|e| ConfigError::new(format!("AMQP_URL is not a valid URL ({e})")))?;
    match url.scheme() {
        "amqp" => {}
        "amqps" => {
            return Err(ConfigError::new(
                "AMQP_URL uses amqps://, but this build of warren speaks plain amqp:// only",
            ))
        }
        other => {
            return Err(ConfigError::new(format!(
                "AMQP_URL must start with amqp://, not {other}://"
            )))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new("AMQP_URL has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(
            "AMQP_URL must not carry a query string or fragment",
        ));
    }
    Ok(url)
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, url) in self.nodes.iter().enumerate() {
            let mut shown = url.clone();
            if shown.password().is_some() {
                // Setting a password only fails on URLs without a host, which `parse` rejected.
                let _ = shown.set_password(Some("***"));
            }
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(shown.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({self})")
    }
}

/// Where the jobs go: the broker and the queue's name.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// The broker's URL, or its nodes' URLs.
    pub url: AmqpUrl,
    /// The work queue; its dead-letter queue is `<queue>.dead`.
    pub queue: QueueName,
    /// How many nodes hold a copy of each quorum queue (`x-quorum-initial-group-size`); the
    /// broker caps it at the cluster's size, so 3 also suits a single node. 0 sends no such
    /// argument (for queues declared before warren set it: the broker checks it on every declare).
    pub quorum_group_size: u8,
}

impl BrokerConfig {
    /// The quorum group size when none is set: 3 members, so one node may be lost.
    pub const DEFAULT_QUORUM_GROUP_SIZE: u8 = 3;

    /// A config for `url` and `queue` with the default quorum group size.
    pub fn new(url: AmqpUrl, queue: QueueName) -> Self {
        Self {
            url,
            queue,
            quorum_group_size: Self::DEFAULT_QUORUM_GROUP_SIZE,
        }
    }
}

/// A queue name that RabbitMQ accepts and that is safe in logs and label values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueName(String);

impl QueueName {
    /// Checks a queue name: 1 to 200 printable ASCII characters, not starting with `amq.`
    /// (reserved by the broker). 200 leaves room for the `.dead` suffix within AMQP's 255 bytes.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let valid_chars = raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c));
        if raw.is_empty() || raw.len() > 200 || !valid_chars {
            return Err(ConfigError::new(format!(
                "QUEUE {raw:?} must be 1 to 200 characters of A-Z, a-z, 0-9, '.', '_', '-', ':'"
            )));
        }
        if raw.starts_with("amq.") {
            return Err(ConfigError::new(format!(
                "QUEUE {raw:?} starts with 'amq.', which the broker reserves"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The work queue's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The dead-letter queue's name: `<queue>.dead`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.0)
    }

    /// The dead-letter exchange's name: `<queue>.dlx`.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.0)
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest duration any setting takes: 30 days.
pub const MAX_DURATION_SECS: f64 = 30.0 * 24.0 * 3600.0;

/// The range of `--speed` K (every time divided by K) for `warren demo` and `warren autoscale`.
pub const SPEED_RANGE: std::ops::RangeInclusive<f64> = 0.1..=100.0;

/// Parses a speed factor K for `--speed`: a number within [`SPEED_RANGE`]. clap names the flag
/// (or its variable) the value came from in front of the message.
pub fn parse_speed(raw: &str) -> Result<f64, String> {
    let (low, high) = (SPEED_RANGE.start(), SPEED_RANGE.end());
    match raw.trim().parse::<f64>() {
        Ok(k) if k.is_finite() && SPEED_RANGE.contains(&k) => Ok(k),
        Ok(_) => Err(format!(
            "the speed K must be from {low} to {high} (every time is divided by K)"
        )),
        Err(_) => Err(format!("not a number; the speed K is from {low} to {high}")),
    }
}

/// Parses a duration: one or more `<number><unit>` groups with units `ms`, `s`, `m`, `h`
/// (`90s`, `2m`, `1m30s`, `1.5s`, `500ms`), or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    let bad = || format!("{raw:?} is not a duration; use e.g. 90s, 2m, 1m30s or 500ms");
    if text.is_empty() {
        return Err(bad());
    }
    let secs = if let Ok(bare) = text.parse::<f64>() {
        bare
    } else {
        let mut total = 0.0;
        let mut rest = text;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let (number, after) = rest.split_at(number_len);
            let unit_len = after
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let value: f64 = number.parse().map_err(|_| bad())?;
            let scale = match unit {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(bad()),
            };
            total += value * scale;
            rest = after;
        }
        total
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    if secs > MAX_DURATION_SECS {
        return Err(format!("{raw:?} is longer than the 30 days allowed"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "-1s", "3 weeks", "1e9h", "1.2.3s", "31d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_redacts_the_password() {
        let url = AmqpUrl::parse("amqp://alice:s3cret@rabbit:5672/%2f").unwrap();
        assert_eq!(url.to_string(), "amqp://alice:***@rabbit:5672/%2f");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(url.expose().contains("s3cret"));
    }

    #[test]
    fn several_nodes_parse_and_each_is_redacted() {
        let url =
            AmqpUrl::parse("amqp://alice:s3cret@r0:5672/%2f, amqp://alice:s3cret@r1:5673/%2f")
                .unwrap();
        assert_eq!(
            url.to_string(),
            "amqp://alice:***@r0:5672/%2f,amqp://alice:***@r1:5673/%2f"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.authority(), "r0:5672,r1:5673");
        let nodes = url.nodes();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].expose(), "amqp://alice:s3cret@r1:5673/%2f");
        // What a child process gets as AMQP_URL parses back to the same nodes.
        assert_eq!(AmqpUrl::parse(url.expose()).unwrap(), url);
        let err = AmqpUrl::parse("amqp://a:b@r0,http://a:secretpw@r1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("address 2 of 2") && !err.contains("secretpw"),
            "{err}"
        );
        assert!(AmqpUrl::parse("amqp://a:b@r0,").is_err());
    }

    #[test]
    fn a_comma_in_a_password_is_encoded_so_the_url_can_be_handed_on() {
        let url = AmqpUrl::from_parts("127.0.0.1", 5672, "guest", "a,b", "/").unwrap();
        assert_eq!(url.expose(), "amqp://guest:a%2Cb@127.0.0.1:5672/%2F");
        assert_eq!(AmqpUrl::parse(url.expose()).unwrap().nodes().len(), 1);
    }

    #[test]
    fn the_vhost_is_the_decoded_path() {
        let vhost = |raw: &str| AmqpUrl::parse(raw).unwrap().vhost();
        assert_eq!(vhost("amqp://u:p@h:5672/%2F"), "/");
        assert_eq!(vhost("amqp://u:p@h:5672"), "/");
        assert_eq!(vhost("amqp://u:p@h:5672/shop"), "shop");
        assert_eq!(vhost("amqp://u:p@h:5672/a%2Bb%20c"), "a+b c");
    }

    #[test]
    fn from_parts_encodes_the_default_vhost_and_odd_passwords() {
        let url = AmqpUrl::from_parts("127.0.0.1", 5672, "guest", "p@ss/word", "/").unwrap();
        assert_eq!(
            url.expose(),
            "amqp://guest:p%40ss%2Fword@127.0.0.1:5672/%2F"
        );
        assert_eq!(url.to_string(), "amqp://guest:***@127.0.0.1:5672/%2F");
    }

    #[test]
    fn parse_rejects_other_schemes_and_garbage_without_echoing_it() {
        for bad in [
            "http://x:y@host",
            "amqp//secretpw@host",
            "",
            "amqp://",
            "amqp://h/?q=1",
        ] {
            let err = AmqpUrl::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("secretpw"), "{err}");
        }
        assert!(AmqpUrl::parse("amqps://h").is_err());
    }

    #[test]
    fn queue_names_are_checked() {
        assert!(QueueName::parse("Orders").is_ok());
        assert!(QueueName::parse("amq.gen").is_err());
        assert!(QueueName::parse("").is_err());
        assert!(QueueName::parse("a b").is_err());
        assert!(QueueName::parse(&"x".repeat(201)).is_err());
        assert_eq!(
            QueueName::parse("Orders").unwrap().dead_letter_queue(),
            "Orders.dead"
        );
    }
}

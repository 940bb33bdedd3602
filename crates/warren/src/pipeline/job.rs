//! What a job is on the wire: its id, its message, and the checks a worker applies to a delivery.
//!
//! A job is one persistent AMQP message: the body is the job id (`text/plain`, as the original application), the
//! id is also the `message_id`, header [`PUBLISHED_MS_HEADER`] holds the publish time in Unix
//! milliseconds (so a worker measures queue wait) and the optional header [`WORK_MS_HEADER`]
//! overrides the worker's work time for that job.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;

/// Header carrying the publish time, Unix milliseconds.
pub const PUBLISHED_MS_HEADER: &str = "x-published-ms";
/// Optional header overriding the work time of one job, milliseconds.
pub const WORK_MS_HEADER: &str = "x-work-ms";
/// The largest work time a job may ask for (and a worker may be configured with): one hour.
pub const MAX_WORK_MS: u64 = 3_600_000;
/// The longest job id a worker accepts.
pub const MAX_ID_LEN: usize = 128;
/// The content type of a job message.
pub const CONTENT_TYPE: &str = "text/plain";

/// A job's id: a ULID (26 characters of Crockford base32), unique, URL-safe and sortable by time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(String);

impl JobId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Makes job ids; ids from one generator are strictly increasing, even within a millisecond.
#[derive(Default)]
pub struct JobIdGenerator(Mutex<ulid::Generator>);

impl JobIdGenerator {
    /// A new generator.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next id.
    pub fn next_id(&self) -> JobId {
        let mut generator = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The monotonic generator only fails when 2^80 ids were made in one millisecond; a fresh
        // random ULID is then still unique.
        let id = generator.generate().unwrap_or_else(|_| ulid::Ulid::new());
        JobId(id.to_string())
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The AMQP properties of a job's message: persistent, `text/plain`, id and publish time.
pub fn message_properties(id: &JobId, published_ms: u64) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        PUBLISHED_MS_HEADER.into(),
        AMQPValue::LongLongInt(i64::try_from(published_ms).unwrap_or(i64::MAX)),
    );
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(CONTENT_TYPE.into())
        .with_message_id(id.as_str().into())
        .with_timestamp(published_ms / 1000)
        .with_headers(headers)
}

/// A delivery that passed the checks: ready to work on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The job's id (the message body).
    pub id: String,
    /// When it was published, if the message says.
    pub published_ms: Option<u64>,
    /// The work time this job asks for, if it overrides the worker's.
    pub work_ms: Option<u64>,
}

impl Job {
    /// How long the job waited in the queue, if its publish time is known.
    pub fn queue_wait(&self, delivered_ms: u64) -> Option<Duration> {
        self.published_ms
            .map(|p| Duration::from_millis(delivered_ms.saturating_sub(p)))
    }
}

/// Why a delivery cannot be processed; such a message is dead-lettered, never retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoisonReason {
    /// The body is not UTF-8 text.
    #[error("body is not UTF-8")]
    BodyNotUtf8,
    /// The body is not a job id: empty, too long, or holding characters ids never have.
    #[error("body is not a job id")]
    BodyNotJobId,
    /// The content type is neither absent nor `text/plain`.
    #[error("content type is not text/plain")]
    WrongContentType,
    /// A header warren reads has the wrong type or an out-of-range value.
    #[error("header {0} has a wrong type or an out-of-range value")]
    BadHeader(&'static str),
}

impl PoisonReason {
    /// The reason as a metric label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::BodyNotUtf8 => "body_not_utf8",
            Self::BodyNotJobId => "body_not_job_id",
            Self::WrongContentType => "wrong_content_type",
            Self::BadHeader(_) => "bad_header",
        }
    }
}

/// Checks a delivery's body and properties and turns it into a [`Job`].
pub fn parse_delivery(body: &[u8], properties: &BasicProperties) -> Result<Job, PoisonReason> {
    if let Some(content_type) = properties.content_type() {
        let essence = content_type
            .as_str()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        if !essence.eq_ignore_ascii_case(CONTENT_TYPE) {
            return Err(PoisonReason::WrongContentType);
        }
    }
    if body.len() > MAX_ID_LEN {
        // Checked before decoding so a 10 MB body costs nothing more.
        return Err(if std::str::from_utf8(body).is_err() {
            PoisonReason::BodyNotUtf8
        } else {
            PoisonReason::BodyNotJobId
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| PoisonReason::BodyNotUtf8)?;
    let id_chars = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c));
    if text.is_empty() || !id_chars {
        return Err(PoisonReason::BodyNotJobId);
    }
    let headers = properties.headers().as_ref();
    let published_ms = match headers.and_then(|h| h.inner().get(PUBLISHED_MS_HEADER)) {
        None => None,
        Some(value) => Some(
            as_u64(value)
                .filter(|&ms| ms > 0)
                .ok_or(PoisonReason::BadHeader(PUBLISHED_MS_HEADER))?,
        ),
    };
    let work_ms = match headers.and_then(|h| h.inner().get(WORK_MS_HEADER)) {
        None => None,
        Some(value) => Some(
            as_u64(value)
                .filter(|&ms| ms <= MAX_WORK_MS)
                .ok_or(PoisonReason::BadHeader(WORK_MS_HEADER))?,
        ),
    };
    Ok(Job {
        id: text.to_owned(),
        published_ms,
        work_ms,
    })
}

/// An integer header value as `u64`, whatever integer width the publisher chose.
fn as_u64(value: &AMQPValue) -> Option<u64> {
    match *value {
        AMQPValue::ShortShortUInt(v) => Some(v.into()),
        AMQPValue::ShortUInt(v) => Some(v.into()),
        AMQPValue::LongUInt(v) => Some(v.into()),
        AMQPValue::ShortShortInt(v) => u64::try_from(v).ok(),
        AMQPValue::ShortInt(v) => u64::try_from(v).ok(),
        AMQPValue::LongInt(v) => u64::try_from(v).ok(),
        AMQPValue::LongLongInt(v) => u64::try_from(v).ok(),
        AMQPValue::Timestamp(v) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn with_header(name: &str, value: AMQPValue) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(name.into(), value);
        BasicProperties::default().with_headers(headers)
    }

    #[test]
    fn ids_are_unique_sortable_and_url_safe() {
        let generator = JobIdGenerator::new();
        let ids: Vec<JobId> = (0..10_000).map(|_| generator.next_id()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids must strictly increase"
        );
        assert!(ids
            .iter()
            .all(|id| id.as_str().len() == 26
                && id.as_str().chars().all(|c| c.is_ascii_alphanumeric())));
    }

    #[test]
    fn a_published_job_parses_back() {
        let id = JobIdGenerator::new().next_id();
        let props = message_properties(&id, 1_700_000_000_000);
        let job = parse_delivery(id.as_str().as_bytes(), &props).unwrap();
        assert_eq!(job.id, id.as_str());
        assert_eq!(job.published_ms, Some(1_700_000_000_000));
        assert_eq!(job.work_ms, None);
        assert_eq!(
            job.queue_wait(1_700_000_000_250),
            Some(Duration::from_millis(250))
        );
        assert_eq!(props.delivery_mode(), &Some(2));
    }

    #[test]
    fn original_style_messages_without_properties_are_accepted() {
        let job = parse_delivery(b"c9u2lg2vvhfd3d8v2n0g", &BasicProperties::default()).unwrap();
        assert_eq!(job.published_ms, None);
    }

    #[test]
    fn poison_messages_are_recognised() {
        let plain = BasicProperties::default();
        assert_eq!(
            parse_delivery(&[0xff, 0xfe], &plain),
            Err(PoisonReason::BodyNotUtf8)
        );
        assert_eq!(parse_delivery(b"", &plain), Err(PoisonReason::BodyNotJobId));
        assert_eq!(
            parse_delivery(b"two words", &plain),
            Err(PoisonReason::BodyNotJobId)
        );
        let big = vec![b'a'; 10 * 1024 * 1024];
        assert_eq!(
            parse_delivery(&big, &plain),
            Err(PoisonReason::BodyNotJobId)
        );
        let json = BasicProperties::default().with_content_type("application/json".into());
        assert_eq!(
            parse_delivery(b"abc", &json),
            Err(PoisonReason::WrongContentType)
        );
        let too_long = with_header(WORK_MS_HEADER, AMQPValue::LongLongInt(3_600_001));
        assert_eq!(
            parse_delivery(b"abc", &too_long),
            Err(PoisonReason::BadHeader(WORK_MS_HEADER))
        );
        let negative = with_header(WORK_MS_HEADER, AMQPValue::LongInt(-1));
        assert!(parse_delivery(b"abc", &negative).is_err());
        let text = with_header(PUBLISHED_MS_HEADER, AMQPValue::LongString("soon".into()));
        assert_eq!(
            parse_delivery(b"abc", &text),
            Err(PoisonReason::BadHeader(PUBLISHED_MS_HEADER))
        );
    }

    /// Every kind of AMQP field value, with arbitrary contents.
    fn any_amqp_value() -> impl Strategy<Value = AMQPValue> {
        use lapin::types::{ByteArray, DecimalValue, FieldArray, LongString, ShortString};
        let leaf = prop_oneof![
            any::<bool>().prop_map(AMQPValue::Boolean),
            any::<i8>().prop_map(AMQPValue::ShortShortInt),
            any::<u8>().prop_map(AMQPValue::ShortShortUInt),
            any::<i16>().prop_map(AMQPValue::ShortInt),
            any::<u16>().prop_map(AMQPValue::ShortUInt),
            any::<i32>().prop_map(AMQPValue::LongInt),
            any::<u32>().prop_map(AMQPValue::LongUInt),
            any::<i64>().prop_map(AMQPValue::LongLongInt),
            any::<f32>().prop_map(AMQPValue::Float),
            any::<f64>().prop_map(AMQPValue::Double),
            (any::<u8>(), any::<u32>())
                .prop_map(|(scale, value)| AMQPValue::DecimalValue(DecimalValue { scale, value })),
            ".{0,20}".prop_map(|s| AMQPValue::ShortString(ShortString::from(s))),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|b| AMQPValue::LongString(LongString::from(b))),
            any::<u64>().prop_map(AMQPValue::Timestamp),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|b| AMQPValue::ByteArray(ByteArray::from(b))),
            Just(AMQPValue::Void),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| AMQPValue::FieldArray(FieldArray::from(v))),
                proptest::collection::vec(("[a-z-]{1,12}", inner), 0..4).prop_map(|entries| {
                    let mut table = FieldTable::default();
                    for (k, v) in entries {
                        table.insert(k.into(), v);
                    }
                    AMQPValue::FieldTable(table)
                }),
            ]
        })
    }

    /// The integer a header value holds, if it is an integer of any width.
    fn integer(value: &AMQPValue) -> Option<i128> {
        match *value {
            AMQPValue::ShortShortInt(v) => Some(v.into()),
            AMQPValue::ShortShortUInt(v) => Some(v.into()),
            AMQPValue::ShortInt(v) => Some(v.into()),
            AMQPValue::ShortUInt(v) => Some(v.into()),
            AMQPValue::LongInt(v) => Some(v.into()),
            AMQPValue::LongUInt(v) => Some(v.into()),
            AMQPValue::LongLongInt(v) => Some(v.into()),
            AMQPValue::Timestamp(v) => Some(v.into()),
            _ => None,
        }
    }

    proptest! {
        #[test]
        fn header_values_of_every_type_never_panic_and_only_in_range_integers_pass(
            value in any_amqp_value(),
            work in any::<bool>(),
        ) {
            let name = if work { WORK_MS_HEADER } else { PUBLISHED_MS_HEADER };
            let result = parse_delivery(b"01JD3ABCDEF", &with_header(name, value.clone()));
            let in_range = integer(&value).is_some_and(|v| {
                if work { (0..=i128::from(MAX_WORK_MS)).contains(&v) } else { v > 0 && v <= i128::from(u64::MAX) }
            });
            match result {
                Ok(job) => {
                    prop_assert!(in_range, "{value:?} accepted for {name}");
                    let got = if work { job.work_ms } else { job.published_ms };
                    prop_assert_eq!(got.map(i128::from), integer(&value));
                }
                Err(reason) => {
                    prop_assert!(!in_range, "{value:?} refused for {name}");
                    prop_assert_eq!(reason, PoisonReason::BadHeader(name));
                }
            }
        }

        #[test]
        fn a_body_over_the_id_limit_is_never_accepted(
            len in (MAX_ID_LEN + 1)..4096,
            filler in "[A-Za-z0-9._~-]",
        ) {
            let body = filler.repeat(len);
            prop_assert_eq!(
                parse_delivery(body.as_bytes(), &BasicProperties::default()),
                Err(PoisonReason::BodyNotJobId)
            );
        }

        #[test]
        fn only_text_plain_content_types_are_accepted(
            essence in "[a-zA-Z]{1,8}/[a-zA-Z+.-]{1,12}",
            parameters in "(; ?[a-z]{1,8}=[a-z0-9-]{1,8}){0,2}",
        ) {
            let properties = BasicProperties::default()
                .with_content_type(format!("{essence}{parameters}").as_str().into());
            let result = parse_delivery(b"job-1", &properties);
            if essence.eq_ignore_ascii_case(CONTENT_TYPE) {
                prop_assert!(result.is_ok());
            } else {
                prop_assert_eq!(result, Err(PoisonReason::WrongContentType));
            }
        }

        #[test]
        fn parse_delivery_never_panics_and_accepts_only_id_text(body in proptest::collection::vec(any::<u8>(), 0..300), work in any::<i64>()) {
            let props = with_header(WORK_MS_HEADER, AMQPValue::LongLongInt(work));
            if let Ok(job) = parse_delivery(&body, &props) {
                prop_assert!(!job.id.is_empty() && job.id.len() <= MAX_ID_LEN);
                prop_assert!(job.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)));
                prop_assert!(job.work_ms.is_some_and(|w| w <= MAX_WORK_MS));
            }
        }
    }
}

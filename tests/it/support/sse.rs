//! Server-Sent Events as the wire carries them, read independently of the product's encoder.

use serde_json::Value;

/// One Server-Sent Event.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    /// `event:`.
    pub kind: String,
    /// `id:`.
    pub id: Option<String>,
    /// `retry:`.
    pub retry: Option<u64>,
    /// `data:` (JSON when it parses, a string otherwise).
    pub data: Value,
}

/// Takes every complete event (a block ended by a blank line) off the front of `buffer`;
/// comment-only blocks (keep-alives) are skipped. Panics on a field SSE does not have.
pub fn take_sse_events(buffer: &mut String) -> Vec<SseEvent> {
    let mut events = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let mut event = SseEvent::default();
        let mut data = String::new();
        let mut fields = 0;
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            fields += 1;
            match field {
                "event" => event.kind = value.to_string(),
                "id" => event.id = Some(value.to_string()),
                "retry" => event.retry = Some(value.parse().expect("retry is a number")),
                "data" => data.push_str(value),
                // A comment (keep-alive).
                "" => fields -= 1,
                other => panic!("unexpected SSE field {other:?} in {block:?}"),
            }
        }
        if fields > 0 {
            event.data = serde_json::from_str(&data).unwrap_or(Value::String(data));
            events.push(event);
        }
    }
    events
}

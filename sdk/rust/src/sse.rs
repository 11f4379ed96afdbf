//! A Server-Sent Events parser (the `text/event-stream` format of the WHATWG HTML standard),
//! fed with the bytes of a response body as they arrive.
//!
//! Kept here rather than taken from `eventsource-client`: that crate needs a hand-written HTTP
//! transport whose futures and streams are `Sync` (reqwest's are not) or a second HTTP stack,
//! and it owns the reconnection policy, which the SDK needs to control (idle timeouts, key
//! rejection, switching to fallback URLs).

/// One thing read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A dispatched event.
    Event(Event),
    /// A comment line (`: keep-alive`), without the colon.
    Comment(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// The `event:` field; `message` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event ID as of this event (`id:` fields persist across events).
    pub id: Option<String>,
}

/// The stream went wrong in a way that makes the connection unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("a line of the event stream is longer than {0} bytes")]
    LineTooLong(usize),
}

/// An incremental parser: [`Parser::feed`] takes any slicing of the body.
#[derive(Debug)]
pub(crate) struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended with CR: a LF starting the next one belongs to that line end.
    after_cr: bool,
    /// Nothing has been read yet (a leading BOM is dropped).
    at_start: bool,
    data: String,
    has_data: bool,
    event: String,
    last_id: Option<String>,
    /// The last `retry:` field read and not yet taken.
    retry: Option<u64>,
    max_line: usize,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Parser {
    /// A parser refusing lines longer than `max_line` bytes (a misbehaving peer cannot make it
    /// buffer without bound).
    pub fn new(max_line: usize) -> Parser {
        Parser {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            data: String::new(),
            has_data: false,
            event: String::new(),
            last_id: None,
            retry: None,
            max_line,
        }
    }

    /// Starts the last event ID at `id` (what was sent as `Last-Event-ID`).
    pub fn with_last_id(mut self, id: Option<String>) -> Parser {
        self.last_id = id;
        self
    }

    /// The reconnection time the server asked for (`retry:`, in milliseconds) since the last
    /// call, if any.
    pub fn take_retry(&mut self) -> Option<u64> {
        self.retry.take()
    }

    /// Consumes `bytes`, appending what they complete to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Item>) -> Result<(), ParseError> {
        if self.at_start {
            // The BOM may itself arrive split; hold back a prefix of it until decided.
            self.line.extend_from_slice(bytes);
            if self.line.len() < BOM.len() && BOM.starts_with(&self.line) {
                return Ok(());
            }
            self.at_start = false;
            let held = std::mem::take(&mut self.line);
            let rest = held.strip_prefix(BOM).unwrap_or(&held);
            return self.feed(rest, out);
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (head, tail) = bytes.split_at(end);
            self.push(head)?;
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, out);
            self.line = line;
            self.line.clear();
            bytes = match tail {
                [b'\r', b'\n', rest @ ..] => rest,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, rest @ ..] => rest,
                [] => &[],
            };
        }
        self.push(bytes)
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), ParseError> {
        if self.line.len() + bytes.len() > self.max_line {
            return Err(ParseError::LineTooLong(self.max_line));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Item>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        let line = String::from_utf8_lossy(line);
        if let Some(comment) = line.strip_prefix(':') {
            out.push(Item::Comment(
                comment.strip_prefix(' ').unwrap_or(comment).to_owned(),
            ));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Item>) {
        let event = std::mem::take(&mut self.event);
        if !self.has_data {
            self.data.clear();
            return;
        }
        self.has_data = false;
        out.push(Item::Event(Event {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone().filter(|id| !id.is_empty()),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<Item> {
        let mut parser = Parser::new(1 << 16);
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out).expect("valid stream");
        }
        out
    }

    fn event(event: &str, data: &str, id: Option<&str>) -> Item {
        Item::Event(Event {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        })
    }

    #[test]
    fn events_comments_and_ids() {
        let stream = b": hello\n\nid: 7\nevent: change\ndata: {\"revision\":7}\n\ndata: a\ndata: b\n\n";
        assert_eq!(
            parse_chunks(&[stream]),
            vec![
                Item::Comment("hello".into()),
                event("change", "{\"revision\":7}", Some("7")),
                // The ID persists to later events until another `id:` field.
                event("message", "a\nb", Some("7")),
            ]
        );
    }

    #[test]
    fn every_split_of_the_bytes_gives_the_same_items() {
        let stream: &[u8] = "\u{FEFF}id: 1\r\ndata: é\r\n\r\n:ka\rdata:x\r\rid: 2\ndata: y\n\n".as_bytes();
        let whole = parse_chunks(&[stream]);
        assert_eq!(
            whole,
            vec![
                event("message", "é", Some("1")),
                Item::Comment("ka".into()),
                event("message", "x", Some("1")),
                event("message", "y", Some("2")),
            ]
        );
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let parts = [&stream[..i], &stream[i..j], &stream[j..]];
                assert_eq!(parse_chunks(&parts), whole, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn events_without_data_are_not_dispatched_and_reset_the_type() {
        let items = parse_chunks(&[b"event: a\n\ndata: z\n\nevent: b\nid\n\n"]);
        assert_eq!(items, vec![event("message", "z", None)]);
    }

    #[test]
    fn empty_id_clears_the_last_event_id_and_retry_is_read() {
        let mut parser = Parser::new(1024);
        let mut out = Vec::new();
        parser
            .feed(b"retry: 3000\n\nid: 5\ndata: a\n\nid\ndata: b\n\n", &mut out)
            .expect("valid");
        assert_eq!(
            out,
            vec![event("message", "a", Some("5")), event("message", "b", None)]
        );
        assert_eq!(parser.take_retry(), Some(3000));
        assert_eq!(parser.take_retry(), None);
        parser.feed(b"retry: soon\n\n", &mut out).expect("valid");
        assert_eq!(parser.take_retry(), None);
    }

    #[test]
    fn the_last_event_id_given_at_start_is_carried() {
        let mut parser = Parser::new(1024).with_last_id(Some("9".into()));
        let mut out = Vec::new();
        parser.feed(b"data: a\n\n", &mut out).expect("valid");
        assert_eq!(out, vec![event("message", "a", Some("9"))]);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = Parser::new(16);
        let mut out = Vec::new();
        parser.feed(b"data: 0123456", &mut out).expect("within the limit");
        assert_eq!(
            parser.feed(b"789abcdef", &mut out),
            Err(ParseError::LineTooLong(16))
        );
    }
}

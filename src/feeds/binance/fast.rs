//! Binance's own layout of a `trade` frame, read straight from its bytes.
//!
//! Binance prints every trade frame the same way — the same keys in the same order, no spaces,
//! no escapes:
//!
//! ```text
//! {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,
//!  "p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}
//! ```
//!
//! A general JSON parser spends most of a frame's time finding out what this layout already
//! says (on the live path it was two thirds of the connector's time per frame). [`trade`] accepts
//! exactly this layout and nothing else: any other order, key, whitespace, escape or number form
//! returns `None`, and the frame goes to the general parser (`serde_json`), which gives the same
//! answer for every frame both accept (checked by the tests below and by the fuzz target).

/// The fields of a trade frame in Binance's layout, borrowed from it.
#[derive(Debug, PartialEq)]
pub(super) struct FastTrade<'a> {
    pub symbol: &'a str,
    pub trade_id: u64,
    pub price: &'a str,
    pub quantity: &'a str,
    pub trade_time: i64,
    pub buyer_is_maker: bool,
}

/// Reads `text` if it is a trade frame in Binance's exact layout.
pub(super) fn trade(text: &str) -> Option<FastTrade<'_>> {
    let mut s = Scanner {
        bytes: text.as_bytes(),
        at: 0,
    };
    s.literal(b"{\"stream\":\"")?;
    let stream = s.string()?;
    if !stream.ends_with("@trade") {
        return None;
    }
    s.literal(b",\"data\":{\"e\":\"trade\",\"E\":")?;
    s.integer()?;
    s.literal(b",\"s\":\"")?;
    let symbol = s.string()?;
    s.literal(b",\"t\":")?;
    let trade_id = u64::try_from(s.integer()?).ok()?;
    s.literal(b",\"p\":\"")?;
    let price = s.string()?;
    s.literal(b",\"q\":\"")?;
    let quantity = s.string()?;
    s.literal(b",\"T\":")?;
    let trade_time = s.integer()?;
    s.literal(b",\"m\":")?;
    let buyer_is_maker = s.boolean()?;
    s.literal(b",\"M\":")?;
    s.boolean()?;
    s.literal(b"}}")?;
    (s.at == s.bytes.len()).then_some(FastTrade {
        symbol,
        trade_id,
        price,
        quantity,
        trade_time,
        buyer_is_maker,
    })
}

/// A cursor over the frame's bytes.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn literal(&mut self, expected: &[u8]) -> Option<()> {
        let rest = self.bytes.get(self.at..)?;
        rest.starts_with(expected)
            .then(|| self.at += expected.len())
    }

    /// The rest of a string whose opening quote was read, up to its closing quote; `None` for
    /// an escape or a control character (the general parser decides those).
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at;
        let rest = self.bytes.get(start..)?;
        let length = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[length] != b'"' {
            return None;
        }
        self.at = start + length + 1;
        // The frame is a `str` and the span ends before an ASCII quote: a char boundary.
        std::str::from_utf8(&rest[..length]).ok()
    }

    /// A JSON integer that fits an `i64`: an optional minus, then digits without a leading
    /// zero. A fraction or exponent follows no integer in the layout, so it is refused by the
    /// next literal.
    fn integer(&mut self) -> Option<i64> {
        let negative = self.bytes.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        let digits = self.bytes.get(self.at..)?;
        let length = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        if length == 0 || (length > 1 && digits[0] == b'0') {
            return None;
        }
        let mut value: i64 = 0;
        for &digit in &digits[..length] {
            let digit = i64::from(digit - b'0');
            value = value.checked_mul(10)?;
            value = if negative {
                value.checked_sub(digit)?
            } else {
                value.checked_add(digit)?
            };
        }
        self.at += length;
        Some(value)
    }

    fn boolean(&mut self) -> Option<bool> {
        if self.literal(b"true").is_some() {
            Some(true)
        } else {
            self.literal(b"false").map(|()| false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: &str = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#;

    #[test]
    fn reads_the_layout() {
        assert_eq!(
            trade(FRAME),
            Some(FastTrade {
                symbol: "BTCUSDT",
                trade_id: 3_735_683_259,
                price: "61837.63000000",
                quantity: "0.02000000",
                trade_time: 1_723_161_255_342,
                buyer_is_maker: true,
            })
        );
    }

    /// Every frame the fast path reads, the general parser reads the same; every variant it
    /// refuses is left to the general parser (which may accept or refuse it).
    #[test]
    fn agrees_with_the_general_parser() {
        use crate::feeds::event::ParseContext;
        use crate::model::FeedId;
        let variants = [
            FRAME.to_string(),
            FRAME.replace("\"m\":true", "\"m\":false"),
            FRAME.replace(":\"BTCUSDT\"", ":\"BTC\\u0055SDT\""),
            FRAME.replace(",\"M\":true", ""),
            FRAME.replace("{\"e\"", "{ \"e\""),
            FRAME.replace("3735683259", "03735683259"),
            FRAME.replace("3735683259", "-1"),
            FRAME.replace("3735683259", "18446744073709551615"),
            FRAME.replace("3735683259", "3735683259.0"),
            FRAME.replace("1723161255342", "-1723161255342"),
            FRAME.replace("1723161255342", "99999999999999999999"),
            FRAME.replace("@trade", "@aggTrade"),
            FRAME.replace("}}", "},\"x\":1}"),
            format!("{FRAME} "),
            FRAME[..FRAME.len() - 1].to_string(),
        ];
        let mut read = 0;
        for text in &variants {
            let Some(fast) = trade(text) else {
                continue;
            };
            read += 1;
            let mut ctx = ParseContext::new(FeedId(0));
            let mut out = Vec::new();
            super::super::parse_general(text, &mut ctx, &mut out).expect("general parse");
            let [crate::feeds::event::FeedEvent::Trade(general)] = out.as_slice() else {
                panic!("{text}: {out:?}")
            };
            assert_eq!(general.symbol.as_str(), fast.symbol, "{text}");
            assert_eq!(general.trade_id, Some(fast.trade_id), "{text}");
            assert_eq!(general.price, fast.price.parse::<f64>().expect("price"));
            assert_eq!(general.exchange_ts, fast.trade_time * 1_000_000, "{text}");
        }
        assert_eq!(read, 3, "the layout, the other side, and a negative time");
    }
}

//! A JSON grammar checker (RFC 8259, by recursive descent), written apart
//! from serde_json so that the `presence_info` oracle judges the encoder's
//! frames by the specification, not by another implementation.

/// What the grammar checker says about a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid,
    Invalid,
    /// Nested deeper than the checker follows.
    TooDeep,
}

/// RFC 8259's grammar, checked by recursive descent: one value with
/// optional surrounding whitespace. String escapes are checked for form
/// only (a lone surrogate escape is grammatical).
pub(crate) fn json_verdict(text: &str) -> Verdict {
    let mut p = Grammar {
        b: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    match p.value().and_then(|()| {
        p.ws();
        if p.at == p.b.len() {
            Ok(())
        } else {
            Err(Verdict::Invalid)
        }
    }) {
        Ok(()) => Verdict::Valid,
        Err(v) => v,
    }
}

struct Grammar<'a> {
    b: &'a [u8],
    at: usize,
    depth: usize,
}

impl Grammar<'_> {
    const MAX_DEPTH: usize = 256;

    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> Result<(), Verdict> {
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(Verdict::Invalid)
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn digits(&mut self) -> Result<(), Verdict> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(Verdict::Invalid);
        }
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        Ok(())
    }

    fn value(&mut self) -> Result<(), Verdict> {
        self.ws();
        match self.peek().ok_or(Verdict::Invalid)? {
            b'{' => self.nested(b'}', true),
            b'[' => self.nested(b']', false),
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Verdict::Invalid),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Verdict> {
        if self.b[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(Verdict::Invalid)
        }
    }

    fn number(&mut self) -> Result<(), Verdict> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits()?,
            _ => return Err(Verdict::Invalid),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.digits()?;
        }
        Ok(())
    }

    fn string(&mut self) -> Result<(), Verdict> {
        self.eat(b'"')?;
        loop {
            match self.peek().ok_or(Verdict::Invalid)? {
                b'"' => {
                    self.at += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.at += 1;
                    match self.peek().ok_or(Verdict::Invalid)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => {
                            self.at += 1;
                            for _ in 0..4 {
                                if !self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                                    return Err(Verdict::Invalid);
                                }
                                self.at += 1;
                            }
                        }
                        _ => return Err(Verdict::Invalid),
                    }
                }
                c if c < 0x20 => return Err(Verdict::Invalid),
                _ => self.at += 1,
            }
        }
    }

    /// An object (`keyed`) or an array, from its opening bracket.
    fn nested(&mut self, close: u8, keyed: bool) -> Result<(), Verdict> {
        self.depth += 1;
        if self.depth > Self::MAX_DEPTH {
            return Err(Verdict::TooDeep);
        }
        self.at += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.at += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            if keyed {
                self.ws();
                self.string()?;
                self.ws();
                self.eat(b':')?;
            }
            self.value()?;
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(c) if c == close => {
                    self.at += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Verdict::Invalid),
            }
        }
    }
}

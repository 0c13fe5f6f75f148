//! Incremental decoder for `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//!
//! Strict by design: line ends must be CRLF and sizes plain hex, because leniency here is
//! what request smuggling feeds on.

/// Why a chunked body was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkedError {
    /// Malformed framing: 400.
    Invalid,
    /// The decoded body would exceed the body limit: 413.
    TooLarge,
    /// The trailer section exceeds the head limit: 431.
    TrailersTooLarge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// `digits`: every hex digit of the size line so far; `significant`: those after leading
    /// zeros.
    Size {
        digits: u8,
        significant: u8,
    },
    /// Whitespace after the size: more of it, or a `;` starting an extension (not the line
    /// end: whitespace before CRLF is read differently by different servers).
    SizeWs,
    /// After a `;`: optional whitespace, then the extension's name.
    ExtStart,
    /// The rest of an extension (`name[=value]`), up to the line end or the next `;` outside
    /// a quoted string.
    Ext {
        quoted: bool,
        escaped: bool,
    },
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Decoder state carried between reads.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    size: u64,
    remaining: u64,
    ext_len: usize,
    trailer_len: usize,
    /// The trailer section as received, each field line with its CRLF.
    trailers: Vec<u8>,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size {
                digits: 0,
                significant: 0,
            },
            size: 0,
            remaining: 0,
            ext_len: 0,
            trailer_len: 0,
            trailers: Vec::new(),
        }
    }
}

/// Longest chunk extension accepted (extensions are ignored, but must not be unbounded).
const MAX_EXT: usize = 1024;
/// Most hex digits in a size line, leading zeros included (15 significant ones already exceed
/// any body limit).
const MAX_SIZE_DIGITS: u8 = 64;

/// A field-name byte (RFC 9110 `tchar`).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A control byte other than HTAB: never allowed in a field value or a chunk extension.
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

impl ChunkedDecoder {
    /// Decodes from `input`, appending data to `body`. Returns how many bytes were consumed and
    /// whether the body (with its trailers) is complete; bytes after the end are not consumed.
    pub fn decode(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        max_body: usize,
        max_trailers: usize,
    ) -> Result<(usize, bool), ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                ChunkState::Done => return Ok((i, true)),
                ChunkState::Data => {
                    i += self.data(&input[i..], body);
                    continue;
                }
                ChunkState::DataCr | ChunkState::DataLf => self.data_end(b)?,
                ChunkState::SizeLf => self.size_end(b, body.len(), max_body)?,
                ChunkState::Size { .. }
                | ChunkState::SizeWs
                | ChunkState::ExtStart
                | ChunkState::Ext { .. } => self.size_line(b)?,
                _ => {
                    if self.trailer(b, max_trailers)? {
                        return Ok((i + 1, true));
                    }
                }
            }
            i += 1;
        }
        Ok((i, self.state == ChunkState::Done))
    }

    /// A byte of a chunk-size line before its LF: hex digits, optional whitespace, then
    /// extensions (`;` and a name, optionally `=` and a token or quoted string, each).
    fn size_line(&mut self, b: u8) -> Result<(), ChunkedError> {
        self.state = match self.state {
            ChunkState::Size {
                digits,
                significant,
            } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if digits >= MAX_SIZE_DIGITS {
                        return Err(ChunkedError::Invalid);
                    }
                    let significant = significant + u8::from(self.size > 0 || b != b'0');
                    if significant > 15 {
                        return Err(ChunkedError::TooLarge);
                    }
                    let v = (b as char).to_digit(16).unwrap_or(0) as u64;
                    self.size = self.size * 16 + v;
                    ChunkState::Size {
                        digits: digits + 1,
                        significant,
                    }
                }
                b';' if digits > 0 => ChunkState::ExtStart,
                b' ' | b'\t' if digits > 0 => ChunkState::SizeWs,
                b'\r' if digits > 0 => ChunkState::SizeLf,
                _ => return Err(ChunkedError::Invalid),
            },
            ChunkState::SizeWs => match b {
                b' ' | b'\t' => ChunkState::SizeWs,
                b';' => ChunkState::ExtStart,
                _ => return Err(ChunkedError::Invalid),
            },
            state => self.extension(state, b)?,
        };
        Ok(())
    }

    /// A byte of a chunk extension (`state` is `ExtStart` or `Ext`); returns the next state.
    fn extension(&mut self, state: ChunkState, b: u8) -> Result<ChunkState, ChunkedError> {
        self.ext_len += 1;
        if self.ext_len > MAX_EXT {
            return Err(ChunkedError::Invalid);
        }
        Ok(match (state, b) {
            (ChunkState::Ext { quoted: false, .. }, b'\r') => ChunkState::SizeLf,
            _ if is_ctl(b) => return Err(ChunkedError::Invalid),
            (ChunkState::ExtStart, b' ' | b'\t') => ChunkState::ExtStart,
            (ChunkState::ExtStart, _) if is_tchar(b) => ChunkState::Ext {
                quoted: false,
                escaped: false,
            },
            (ChunkState::ExtStart, _) => return Err(ChunkedError::Invalid),
            (
                ChunkState::Ext {
                    quoted: true,
                    escaped,
                },
                _,
            ) => ChunkState::Ext {
                quoted: escaped || b != b'"',
                escaped: !escaped && b == b'\\',
            },
            (_, b';') => ChunkState::ExtStart,
            (_, b'"') => ChunkState::Ext {
                quoted: true,
                escaped: false,
            },
            (state, _) => state,
        })
    }

    /// The LF ending a size line: the chunk's data follows, or the trailers after the last.
    fn size_end(&mut self, b: u8, body_len: usize, max_body: usize) -> Result<(), ChunkedError> {
        if b != b'\n' {
            return Err(ChunkedError::Invalid);
        }
        if self.size == 0 {
            self.state = ChunkState::TrailerStart;
        } else {
            if body_len as u64 + self.size > max_body as u64 {
                return Err(ChunkedError::TooLarge);
            }
            self.remaining = self.size;
            self.state = ChunkState::Data;
        }
        self.size = 0;
        self.ext_len = 0;
        Ok(())
    }

    /// A chunk's data, as much of it as `input` holds; returns the bytes taken.
    fn data(&mut self, input: &[u8], body: &mut Vec<u8>) -> usize {
        let n = (self.remaining as usize).min(input.len());
        body.extend_from_slice(&input[..n]);
        self.remaining -= n as u64;
        if self.remaining == 0 {
            self.state = ChunkState::DataCr;
        }
        n
    }

    /// The CRLF after a chunk's data.
    fn data_end(&mut self, b: u8) -> Result<(), ChunkedError> {
        self.state = match (self.state, b) {
            (ChunkState::DataCr, b'\r') => ChunkState::DataLf,
            (ChunkState::DataLf, b'\n') => ChunkState::Size {
                digits: 0,
                significant: 0,
            },
            _ => return Err(ChunkedError::Invalid),
        };
        Ok(())
    }

    /// The trailer fields received (raw lines, each ending in CRLF).
    pub fn take_trailers(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.trailers)
    }

    /// A byte of the trailer section; returns true at the end of the body. Each trailer line
    /// is a field: a name of token bytes, `:`, a value without control bytes. Anything else (a
    /// request line, a bare line) is refused rather than swallowed as a trailer.
    fn trailer(&mut self, b: u8, max_trailers: usize) -> Result<bool, ChunkedError> {
        self.trailer_len += 1;
        if self.trailer_len > max_trailers && self.state != ChunkState::TrailerStart {
            return Err(ChunkedError::TrailersTooLarge);
        }
        self.state = match (self.state, b) {
            (ChunkState::TrailerStart, b'\r') => ChunkState::TrailerLf { empty: true },
            (ChunkState::TrailerStart, _) if is_tchar(b) => ChunkState::TrailerName,
            (ChunkState::TrailerName, b':') => ChunkState::TrailerValue,
            (ChunkState::TrailerName, _) if is_tchar(b) => ChunkState::TrailerName,
            (ChunkState::TrailerValue, b'\r') => ChunkState::TrailerLf { empty: false },
            (ChunkState::TrailerValue, _) if !is_ctl(b) => ChunkState::TrailerValue,
            (ChunkState::TrailerLf { empty: true }, b'\n') => {
                self.state = ChunkState::Done;
                return Ok(true);
            }
            (ChunkState::TrailerLf { empty: false }, b'\n') => ChunkState::TrailerStart,
            _ => return Err(ChunkedError::Invalid),
        };
        if self.state != (ChunkState::TrailerLf { empty: true }) {
            self.trailers.push(b);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], max: usize) -> Result<(usize, bool, Vec<u8>), ChunkedError> {
        let mut d = ChunkedDecoder::default();
        let mut body = Vec::new();
        let (n, done) = d.decode(input, &mut body, max, 1024)?;
        Ok((n, done, body))
    }

    #[test]
    fn table() {
        type Case<'a> = (&'a [u8], Result<(usize, bool, &'a [u8]), ChunkedError>);
        let cases: &[Case<'_>] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", Ok((15, true, b"hello"))),
            (b"5\r\nhello\r\n0\r\n\r\nNEXT", Ok((15, true, b"hello"))),
            (b"3;ext=1\r\nabc\r\n0\r\n\r\n", Ok((19, true, b"abc"))),
            (
                b"A\r\n0123456789\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n",
                Ok((34, true, b"0123456789")),
            ),
            (b"5\r\nhel", Ok((6, false, b"hel"))),
            (b"0\r\n\r", Ok((4, false, b""))),
            (b"5\nhello\r\n0\r\n\r\n", Err(ChunkedError::Invalid)),
            (b"5\r\nhelloX\r\n", Err(ChunkedError::Invalid)),
            (b"g\r\n", Err(ChunkedError::Invalid)),
            (b"\r\n", Err(ChunkedError::Invalid)),
            (b"-1\r\n", Err(ChunkedError::Invalid)),
            (b"0\r\nbad\nline\r\n\r\n", Err(ChunkedError::Invalid)),
            (b"ffffffffffffffffff\r\n", Err(ChunkedError::TooLarge)),
            // Leading zeros are digits like any other, but do not count toward the size's.
            (
                b"0000000000000000003\r\nabc\r\n0\r\n\r\n",
                Ok((31, true, b"abc")),
            ),
            (b"3 \t;x\r\nabc\r\n0\r\n\r\n", Ok((17, true, b"abc"))),
            (b"3; x\r\nabc\r\n0\r\n\r\n", Ok((16, true, b"abc"))),
            (
                b"3;x;y=\"a;b\\\"\"\r\nabc\r\n0\r\n\r\n",
                Ok((25, true, b"abc")),
            ),
            // Whitespace before the line end, and a `;` with no name after it, are refused:
            // servers read them differently.
            (b"3 \r\nabc\r\n0\r\n\r\n", Err(ChunkedError::Invalid)),
            (b"3\t\r\nabc\r\n0\r\n\r\n", Err(ChunkedError::Invalid)),
            (b"3;\r\nabc\r\n0\r\n\r\n", Err(ChunkedError::Invalid)),
            (b"3; \r\nabc\r\n0\r\n\r\n", Err(ChunkedError::Invalid)),
            (b"3;x;\r\nabc\r\n0\r\n\r\n", Err(ChunkedError::Invalid)),
            (b"3;=v\r\nabc\r\n0\r\n\r\n", Err(ChunkedError::Invalid)),
            // After the size and its whitespace, only an extension.
            (b"3 zz\r\nabc\r\n0\r\n\r\n", Err(ChunkedError::Invalid)),
            (b"3;a\x00\r\nabc\r\n0\r\n\r\n", Err(ChunkedError::Invalid)),
            (b"3;a\x7f\r\nabc\r\n0\r\n\r\n", Err(ChunkedError::Invalid)),
            // A trailer line must be a field: a request line after a missing final CRLF is not.
            (
                b"0\r\nGET /json HTTP/1.1\r\nHost: a\r\n\r\n",
                Err(ChunkedError::Invalid),
            ),
            (b"0\r\nX: \x00\x01\r\n\r\n", Err(ChunkedError::Invalid)),
            (b"0\r\n: v\r\n\r\n", Err(ChunkedError::Invalid)),
            (b"0\r\nX-A: a\tb\r\n\r\n", Ok((15, true, b""))),
            (b"11\r\n", Err(ChunkedError::TooLarge)),
        ];
        for (input, want) in cases {
            let got = run(input, 16);
            let want = want.map(|(n, d, b)| (n, d, b.to_vec()));
            assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn any_split_gives_the_same_body() {
        let input = b"4\r\nWiki\r\n5;a=b\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\n";
        for cut in 0..input.len() {
            let mut d = ChunkedDecoder::default();
            let mut body = Vec::new();
            let (n1, done1) = d.decode(&input[..cut], &mut body, 1 << 20, 1024).unwrap();
            assert_eq!(n1, cut);
            assert!(!done1 || cut == input.len());
            let (n2, done2) = d.decode(&input[cut..], &mut body, 1 << 20, 1024).unwrap();
            assert_eq!(n1 + n2, input.len());
            assert!(done2);
            assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
        }
    }
}

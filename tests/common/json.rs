//! A small JSON reader for the tests: the app's log lines and `/echo` bodies (tests/proxy.rs),
//! and `ringshard load --json` reports (tests/load_e2e.rs).

/// A JSON value; an object keeps its members in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

static NULL: Json = Json::Null;

impl Json {
    /// Parses `text` (one value, whitespace around it allowed), or says where it is wrong.
    pub fn try_parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        match p.i == p.s.len() {
            true => Ok(v),
            false => Err(format!("bytes after the value at {}", p.i)),
        }
    }

    /// As [`Json::try_parse`], for text that must be JSON.
    pub fn parse(text: &str) -> Json {
        Json::try_parse(text).unwrap_or_else(|e| panic!("bad JSON ({e}): {text:?}"))
    }

    /// The member `key` of an object; Null if absent.
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map_or(&NULL, |(_, v)| v),
            _ => &NULL,
        }
    }

    /// The value at a dotted path of members (`latency_us.p99`), which must be there.
    pub fn at(&self, path: &str) -> &Json {
        path.split('.').fold(self, |v, k| match v {
            Json::Obj(m) => m
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no key {k} in {path}")),
            _ => panic!("{path}: not an object at {k}"),
        })
    }

    /// The number at a dotted path.
    pub fn num_at(&self, path: &str) -> f64 {
        match self.at(path) {
            Json::Num(n) => *n,
            o => panic!("{path} is {o:?}"),
        }
    }

    /// The whole number at a dotted path.
    pub fn u(&self, path: &str) -> u64 {
        self.num_at(path) as u64
    }

    pub fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn num(&self) -> u64 {
        match self {
            Json::Num(n) => *n as u64,
            other => panic!("not a number: {other:?}"),
        }
    }

    pub fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }

    /// The values named `name` (case-insensitive) in the `[[name, value], ...]` member `list`.
    pub fn fields(&self, list: &str, name: &str) -> Vec<&str> {
        self.get(list)
            .arr()
            .iter()
            .filter_map(|pair| match pair.arr() {
                [n, v] if n.str().is_some_and(|n| n.eq_ignore_ascii_case(name)) => v.str(),
                _ => None,
            })
            .collect()
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Result<u8, String> {
        self.s
            .get(self.i)
            .copied()
            .ok_or_else(|| "the JSON ends early".to_string())
    }

    fn eat(&mut self, b: u8) -> Result<(), String> {
        match self.peek()? == b {
            true => {
                self.i += 1;
                Ok(())
            }
            false => Err(format!("expected {:?} at byte {}", b as char, self.i)),
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, String> {
        match self.s[self.i..].starts_with(word.as_bytes()) {
            true => {
                self.i += word.len();
                Ok(v)
            }
            false => Err(format!("bad literal at {}", self.i)),
        }
    }

    /// Items up to `close`, each read by `item`, separated by commas.
    fn list(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        self.i += 1;
        self.ws();
        if self.peek()? == close {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            item(self)?;
            self.ws();
            if self.peek()? != b',' {
                return self.eat(close);
            }
            self.i += 1;
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.peek()? {
            b'{' => {
                let mut members = Vec::new();
                self.list(b'}', |p| {
                    let k = p.string()?;
                    p.ws();
                    p.eat(b':')?;
                    members.push((k, p.value()?));
                    Ok(())
                })?;
                Ok(Json::Obj(members))
            }
            b'[' => {
                let mut items = Vec::new();
                self.list(b']', |p| {
                    items.push(p.value()?);
                    Ok(())
                })?;
                Ok(Json::Arr(items))
            }
            b'"' => Ok(Json::Str(self.string()?)),
            b't' => self.literal("true", Json::Bool(true)),
            b'f' => self.literal("false", Json::Bool(false)),
            b'n' => self.literal("null", Json::Null),
            _ => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(Json::Num)
                    .ok_or_else(|| format!("bad number at {start}"))
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("bad \\u escape at {}", self.i))?;
        self.i += 4;
        Ok(h)
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            let start = self.i;
            while !matches!(self.peek()?, b'"' | b'\\') {
                self.i += 1;
            }
            let run = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
            out.push_str(run);
            self.i += 1;
            if self.s[self.i - 1] == b'"' {
                return Ok(out);
            }
            let e = self.peek()?;
            self.i += 1;
            out.push(match e {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let mut cp = self.hex4()?;
                    if (0xD800..0xDC00).contains(&cp) && self.s[self.i..].starts_with(b"\\u") {
                        self.i += 2;
                        let low = self.hex4()?;
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3ff);
                    }
                    char::from_u32(cp).unwrap_or('\u{FFFD}')
                }
                other => return Err(format!("bad escape \\{}", other as char)),
            });
        }
    }
}

//! The `Date` header value, formatted at most once a second per shard (RFC 9110 IMF-fixdate).
use std::time::{SystemTime, UNIX_EPOCH};

/// A cached `Date` value; `refresh` reformats only when the second has changed.
pub struct HttpDate {
    second: u64,
    text: [u8; 29],
}

impl Default for HttpDate {
    fn default() -> Self {
        let mut d = HttpDate {
            second: u64::MAX,
            text: [b' '; 29],
        };
        d.refresh();
        d
    }
}

impl HttpDate {
    /// Updates the cached text if the wall-clock second changed since the last call.
    pub fn refresh(&mut self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if now != self.second {
            self.second = now;
            self.text = format_imf(now);
        }
    }

    /// Seconds since the epoch, as of the last refresh.
    pub fn second(&self) -> u64 {
        self.second
    }

    /// The formatted value, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    pub fn as_bytes(&self) -> &[u8; 29] {
        &self.text
    }
}

/// Formats seconds since the epoch as IMF-fixdate.
pub fn format_imf(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let mut out = [0u8; 29];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3] = b',';
    out[4] = b' ';
    two(&mut out[5..7], d as u64);
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(m - 1) as usize]);
    out[11] = b' ';
    let y = y as u64;
    two(&mut out[12..14], y / 100);
    two(&mut out[14..16], y % 100);
    out[16] = b' ';
    two(&mut out[17..19], rem / 3600);
    out[19] = b':';
    two(&mut out[20..22], rem / 60 % 60);
    out[22] = b':';
    two(&mut out[23..25], rem % 60);
    out[25..].copy_from_slice(b" GMT");
    out
}

fn two(dst: &mut [u8], v: u64) {
    dst[0] = b'0' + (v / 10 % 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

/// (year, month, day, hour, minute, second) of seconds since the epoch, in UTC.
pub fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to seconds since the epoch; `None`
/// for anything else (the obsolete formats are not sent by clients in use, and a date that
/// does not parse only costs a full response).
pub fn parse_imf(text: &[u8]) -> Option<u64> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let t = text.trim_ascii();
    if t.len() != 29 || t[3] != b',' || t[4] != b' ' || &t[25..] != b" GMT" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        t[r].iter().try_fold(0i64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
        })
    };
    let day = num(5..7)?;
    let month = MONTHS.iter().position(|m| &t[8..11] == *m)? as i64 + 1;
    let year = num(12..16)?;
    let (h, mi, s) = (num(17..19)?, num(20..22)?, num(23..25)?);
    let seps = t[7] == b' ' && t[11] == b' ' && t[16] == b' ' && t[19] == b':' && t[22] == b':';
    if !seps || !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 || year < 1970 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + s).ok()
}

/// (year, month, day) to days since 1970-01-01, the inverse of `civil_from_days`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::{format_imf, parse_imf};

    #[test]
    fn parses_what_it_formats_and_nothing_else() {
        for secs in [0, 784_111_777, 951_782_400, 1_795_435_200, 4_102_444_799] {
            assert_eq!(parse_imf(&format_imf(secs)), Some(secs), "{secs}");
        }
        for bad in [
            &b"Sunday, 06-Nov-94 08:49:37 GMT"[..],
            b"Sun Nov  6 08:49:37 1994",
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 6 Nov 1994 08:49:37 GMT",
            b"",
        ] {
            assert_eq!(parse_imf(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn formats_known_dates() {
        for (secs, want) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_795_435_200, "Mon, 23 Nov 2026 12:00:00 GMT"),
        ] {
            assert_eq!(
                std::str::from_utf8(&format_imf(secs)).unwrap(),
                want,
                "{secs}"
            );
        }
    }
}

//! Results: the human summary, `--json`, and HdrHistogram's percentile-distribution text.
use std::fmt::Write;

use hdrhistogram::Histogram;

use super::stats::{ErrorKind, Stats};

/// A finished run.
pub struct Summary<'a> {
    pub target: &'a str,
    pub threads: usize,
    pub connections: u32,
    pub pipeline: u32,
    pub rate: Option<f64>,
    pub elapsed_s: f64,
    pub stats: &'a Stats,
}

impl Summary<'_> {
    pub fn achieved_rate(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.stats.requests as f64 / self.elapsed_s
        } else {
            0.0
        }
    }
}

/// Latency percentiles reported, with their JSON names.
const PERCENTILES: [(&str, f64); 6] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
    ("p99_99", 99.99),
    ("max", 100.0),
];

fn ms(us: u64) -> String {
    let v = us as f64 / 1000.0;
    if v >= 100.0 {
        format!("{v:.1}ms")
    } else {
        format!("{v:.3}ms")
    }
}

/// Groups thousands: 1234567 -> 1,234,567.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub fn text(s: &Summary<'_>) -> String {
    let st = s.stats;
    let h = &st.latency;
    let mut o = String::new();
    let mode = match s.rate {
        Some(r) => format!("open loop at {r} req/s"),
        None => "closed loop".into(),
    };
    let _ = writeln!(
        o,
        "{}: {} thread(s), {} connection(s), pipeline {}, {mode}, {:.2}s",
        s.target, s.threads, s.connections, s.pipeline, s.elapsed_s
    );
    let _ = writeln!(
        o,
        "  requests  {} completed, {} sent, {:.1} req/s{}",
        group(st.requests),
        group(st.sent),
        s.achieved_rate(),
        match s.rate {
            Some(r) => format!(" (target {r}, {:.1}%)", 100.0 * s.achieved_rate() / r),
            None => String::new(),
        }
    );
    let _ = writeln!(
        o,
        "  bytes     {} read, {} written, {} connect(s)",
        group(st.bytes_read),
        group(st.bytes_written),
        group(st.connects)
    );
    if !h.is_empty() {
        let mut line = format!(
            "  latency   min {}  mean {:.3}ms",
            ms(h.min()),
            h.mean() / 1000.0
        );
        for (name, p) in PERCENTILES {
            let _ = write!(line, "  {name} {}", ms(h.value_at_percentile(p)));
        }
        let _ = writeln!(o, "{line}");
    }
    let codes: Vec<String> = st
        .status
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(c, n)| {
            format!(
                "{}: {}",
                if c == 0 {
                    "other".into()
                } else {
                    c.to_string()
                },
                group(*n)
            )
        })
        .collect();
    if !codes.is_empty() {
        let _ = writeln!(o, "  status    {}", codes.join(", "));
    }
    let errs: Vec<String> = ErrorKind::ALL
        .iter()
        .map(|&k| format!("{} {}", k.name(), st.errors[k as usize]))
        .collect();
    let _ = writeln!(
        o,
        "  errors    {} ({})",
        group(st.error_total()),
        errs.join(", ")
    );
    o
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_f(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}

pub fn json(s: &Summary<'_>) -> String {
    let st = s.stats;
    let h = &st.latency;
    let mut o = String::from("{");
    let _ = write!(
        o,
        "\"target\":{},\"threads\":{},\"connections\":{},\"pipeline\":{},\"target_rate\":{},\"duration_s\":{},\"requests\":{},\"sent\":{},\"rate\":{},\"bytes_read\":{},\"bytes_written\":{},\"connects\":{},",
        json_str(s.target),
        s.threads,
        s.connections,
        s.pipeline,
        s.rate.map_or("null".into(), json_f),
        json_f(s.elapsed_s),
        st.requests,
        st.sent,
        json_f(s.achieved_rate()),
        st.bytes_read,
        st.bytes_written,
        st.connects
    );
    let _ = write!(
        o,
        "\"latency_us\":{{\"min\":{},\"mean\":{}",
        if h.is_empty() { 0 } else { h.min() },
        json_f(h.mean())
    );
    for (name, p) in PERCENTILES {
        let _ = write!(o, ",\"{name}\":{}", h.value_at_percentile(p));
    }
    o.push_str("},\"status\":{");
    let mut first = true;
    for (code, &n) in st.status.iter().enumerate().filter(|(_, &n)| n > 0) {
        let name = if code == 0 {
            "other".to_string()
        } else {
            code.to_string()
        };
        let _ = write!(o, "{}\"{name}\":{n}", if first { "" } else { "," });
        first = false;
    }
    o.push_str("},\"errors\":{");
    for k in ErrorKind::ALL {
        let _ = write!(o, "\"{}\":{},", k.name(), st.errors[k as usize]);
    }
    let _ = write!(o, "\"total\":{}}}}}", st.error_total());
    o
}

/// The percentile distribution as HdrHistogram's `outputPercentileDistribution` writes it
/// (values in milliseconds, 5 ticks per half distance), readable by its plotter.
pub fn hdr_text(h: &Histogram<u64>) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    o,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(o, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let (mean, sd, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / 1000.0,
            h.stdev() / 1000.0,
            h.highest_equivalent(h.max()) as f64 / 1000.0,
        )
    };
    let _ = writeln!(o, "#[Mean    = {mean:12.3}, StdDeviation   = {sd:12.3}]");
    let _ = writeln!(
        o,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        h.len()
    );
    let _ = writeln!(
        o,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        (2 * 10u64.pow(h.sigfig() as u32)).next_power_of_two()
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hdr_text_shape() {
        let mut h = super::super::stats::new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let t = hdr_text(&h);
        assert!(t.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        let last = t
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap();
        assert!(last.contains("1.000000000000"), "{last}");
        assert!(last.trim_end().ends_with("1000"));
        assert!(
            t.contains("#[Max     =       10.007, Total count    =         1000]"),
            "{t}"
        );
    }

    #[test]
    fn grouping() {
        assert_eq!(group(0), "0");
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(group(100), "100");
    }
}

//! `ringshard probe`: what this kernel lets ringshard use, as a table or as JSON.
use std::process::ExitCode;

use clap::Args;

use crate::uring::probe::{probe, Report};

/// Flags of `ringshard probe`.
#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the probe; exits 0 whether or not io_uring is usable (the answer is the output).
pub fn run(args: ProbeArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let r = probe();
    if args.json {
        println!("{}", to_json(&r));
    } else {
        print!("{}", to_table(&r));
    }
    Ok(ExitCode::SUCCESS)
}

fn limit(v: Option<u64>) -> String {
    match v {
        Some(u64::MAX) => "unlimited".into(),
        Some(n) => n.to_string(),
        None => "unknown".into(),
    }
}

/// The human-readable table.
pub fn to_table(r: &Report) -> String {
    let mut s = format!("kernel           {}\n", r.kernel);
    match &r.io_uring {
        Ok(()) => s += "io_uring         usable\n",
        Err(why) => s += &format!("io_uring         NOT usable: {why}\n"),
    }
    s += "\nfeature                      supported  how\n";
    for f in &r.features {
        s += &format!(
            "{:<28} {:<10} {}\n",
            f.name,
            if f.supported { "yes" } else { "no" },
            f.note
        );
    }
    s += &format!(
        "\nlimits\nmemlock          {}\nopen files       {}\nsomaxconn        {}\ncpus allowed     {}\n",
        limit(r.memlock_bytes),
        limit(r.open_files),
        limit(r.somaxconn),
        r.cpus_allowed
    );
    s
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o += "\\\"",
            '\\' => o += "\\\\",
            c if (c as u32) < 0x20 => o += &format!("\\u{:04x}", c as u32),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn num(v: Option<u64>) -> String {
    match v {
        Some(u64::MAX) => "\"unlimited\"".into(),
        Some(n) => n.to_string(),
        None => "null".into(),
    }
}

/// The stable JSON shape: `kernel`, `io_uring` {`usable`, `error`},
/// `features` {name: {`supported`, `note`}}, `limits` {`memlock_bytes`, `open_files`,
/// `somaxconn`, `cpus_allowed`}.
pub fn to_json(r: &Report) -> String {
    let (usable, error) = match &r.io_uring {
        Ok(()) => (true, "null".to_string()),
        Err(e) => (false, esc(e)),
    };
    let features: Vec<String> = r
        .features
        .iter()
        .map(|f| {
            format!(
                "{}:{{\"supported\":{},\"note\":{}}}",
                esc(f.name),
                f.supported,
                esc(&f.note)
            )
        })
        .collect();
    format!(
        "{{\"kernel\":{},\"io_uring\":{{\"usable\":{usable},\"error\":{error}}},\"features\":{{{}}},\"limits\":{{\"memlock_bytes\":{},\"open_files\":{},\"somaxconn\":{},\"cpus_allowed\":{}}}}}",
        esc(&r.kernel),
        features.join(","),
        num(r.memlock_bytes),
        num(r.open_files),
        num(r.somaxconn),
        r.cpus_allowed
    )
}

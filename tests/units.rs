//! The example systemd units under `scripts/` pass `systemd-analyze verify` (where it is
//! installed), with the binary this build made in place of the installed path, and no warning.
use std::process::Command;

#[test]
fn the_example_units_verify_clean() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed (apt-get install -y systemd)");
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("ringshard-units-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for unit in ["ringshard.service", "ringshard.socket"] {
        let text = std::fs::read_to_string(root.join("scripts").join(unit)).unwrap();
        let text = text.replace("/usr/local/bin/ringshard", env!("CARGO_BIN_EXE_ringshard"));
        std::fs::write(dir.join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("ringshard.socket"))
        .arg(dir.join("ringshard.service"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{err}"
    );
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("ringshard.s")).collect();
    assert!(ours.is_empty(), "warnings about the units:\n{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

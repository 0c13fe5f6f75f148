//! The crate's module graph, read from the source tree: the HTTP core is a leaf (nothing under
//! `src/http/` names a module outside it), and no two modules name each other, directly or
//! through others. A module is a file (`src/a/b.rs` is `a::b`, `src/a/mod.rs` is `a`); a path
//! `crate::a::b::c` or `super::c` in its text, comments and strings aside, is an edge to the
//! longest module that path starts with.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name -> source text without comments and string literals.
fn modules() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    let root = stack[0].clone();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into()).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            let name = match parts.as_slice() {
                [one] if one == "lib" => "crate".to_string(),
                _ => parts.join("::"),
            };
            out.insert(name, code_only(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    out
}

/// The text with `//` comments, `/* */` comments and string and char literals blanked.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'/', Some(b'/')) => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            (b'"', _) => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            (b'r', Some(b'#' | b'"')) if i == 0 || !b[i - 1].is_ascii_alphanumeric() => {
                // A raw string: r"..." or r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while j < b.len() && b[j] == b'#' {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                let close: String = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let rest = &src[j + 1..];
                i = j + 1 + rest.find(&close).map_or(rest.len(), |k| k + close.len());
                out.push_str("\"\"");
            }
            (b'\'', _) if b.get(i + 2) == Some(&b'\'') || (b.get(i + 1) == Some(&b'\\')) => {
                // A char literal ('x' or '\n'); lifetimes ('a) are left alone.
                let end = src[i + 1..].find('\'').map_or(b.len(), |k| i + 2 + k);
                i = end;
                out.push_str("' '");
            }
            _ => {
                out.push(b[i] as char);
                i += 1;
            }
        }
    }
    out
}

/// The modules `name`'s text refers to, other than itself and its own children.
fn edges(name: &str, text: &str, all: &BTreeSet<String>) -> BTreeSet<String> {
    let parent = name.rsplit_once("::").map_or("crate", |(p, _)| p);
    let mut found = BTreeSet::new();
    for (prefix, base) in [("crate::", ""), ("super::", parent)] {
        let mut from = 0;
        while let Some(k) = text[from..].find(prefix) {
            let at = from + k;
            from = at + prefix.len();
            if at > 0 {
                let before = text.as_bytes()[at - 1];
                if before.is_ascii_alphanumeric() || before == b'_' {
                    continue; // `my_crate::` and the like
                }
            }
            let path: String = text[from..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            let head = if base.is_empty() || base == "crate" {
                Vec::new()
            } else {
                base.split("::").collect()
            };
            let full: Vec<&str> = head.into_iter().chain(segs.drain(..)).collect();
            for n in (1..=full.len()).rev() {
                let m = full[..n].join("::");
                if all.contains(&m) {
                    if m != name && !m.starts_with(&format!("{name}::")) {
                        found.insert(m);
                    }
                    break;
                }
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let names: BTreeSet<String> = mods.keys().cloned().collect();
    mods.iter()
        .map(|(n, t)| (n.clone(), edges(n, t, &names)))
        .collect()
}

#[test]
fn the_http_core_names_nothing_outside_itself() {
    let g = graph();
    assert!(g.contains_key("http::conn"), "modules: {:?}", g.keys());
    let bad: Vec<String> = g
        .iter()
        .filter(|(n, _)| *n == "http" || n.starts_with("http::"))
        .flat_map(|(n, es)| {
            es.iter()
                .filter(|e| *e != "http" && !e.starts_with("http::"))
                .map(move |e| format!("{n} -> {e}"))
        })
        .collect();
    assert!(bad.is_empty(), "the HTTP core reaches out: {bad:#?}");
}

#[test]
fn no_modules_name_each_other_in_a_circle() {
    let g = graph();
    // Tarjan's strongly connected components; any with two or more modules is a circle.
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        circles: Vec<Vec<String>>,
    }
    impl<'a> T<'a> {
        fn visit(&mut self, v: &'a str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on.insert(v);
            for w in &self.g[v] {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let l = self.low[v].min(self.low[w]);
                    self.low.insert(v, l);
                } else if self.on.contains(w) {
                    let l = self.low[v].min(self.index[w]);
                    self.low.insert(v, l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    scc.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    self.circles.push(scc);
                }
            }
        }
    }
    let mut t = T {
        g: &g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        circles: Vec::new(),
    };
    // The crate root declares every module and re-exports some; it is not a layer.
    for v in g.keys().filter(|v| *v != "crate" && *v != "main") {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    let detail: Vec<String> = t
        .circles
        .iter()
        .map(|c| {
            let edges: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    g[a].iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{a} -> {b}"))
                })
                .collect();
            edges.join(", ")
        })
        .collect();
    assert!(t.circles.is_empty(), "module circles: {detail:#?}");
}

#[test]
fn the_reader_finds_paths_and_skips_comments_and_strings() {
    let all: BTreeSet<String> = ["a", "a::b", "c"].iter().map(|s| s.to_string()).collect();
    let text = code_only(
        "use crate::c::X; // crate::a::b\nlet s = \"crate::a\"; let r = r#\"crate::a\"#; super::b::f();",
    );
    let got = edges("a::d", &text, &all);
    let want: BTreeSet<String> = ["a::b", "c"].iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want);
}

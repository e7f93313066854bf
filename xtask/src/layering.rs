//! The layering test: no modules of xtask import each other in a circle, directly or
//! through others, so the layers in `main.rs`'s doc stay layers.
//!
//! What a module is here:
//!
//! - every `.rs` file under `xtask/src` is one module: `main.rs` is the crate root,
//!   `a.rs` and `a/mod.rs` are `a`, `a/b.rs` is `a::b`; an inline module
//!   (`mod tests { .. }`) belongs to its file;
//! - a directory is also a module: `a/mod.rs` together with every file below `a/`.
//!
//! The test looks at the tree at every depth. At depth `d` every file is merged into its
//! ancestor at depth `d` (`suites::bench::report` is `suites` at depth 1 and
//! `suites::bench` at depth 2; the crate root and `harness` are themselves at every
//! depth), and the graph of those modules must have no cycle. Depth 1 is the layers
//! (`base`, `build`, `guest`, `harness`, `suites` and the root); the deepest is single
//! files. So two layers that use each other fail even when no two files do, and two
//! files of one layer (`bench` and its report) fail too.
//!
//! An edge `a -> b` is a path in a file of `a` that names something in `b`: in a `use`
//! (groups, `self`, `as`, globs) or in code (`crate::harness::build_and_boot(..)`). A path
//! counts when it starts with `crate`, `self`, `super`, a child module of the file's
//! module (`report::write` in `suites/bench/mod.rs`), or a name a `use` bound to a module
//! (`use crate::build::kernel;` then `kernel::build(..)`). It names the longest prefix of
//! it that is a module: `crate::guest::vm::Guest` is `guest::vm`,
//! `crate::harness::MODULE_PATH` is `harness`, `crate::Result` would be the root. A
//! re-export is an edge of the file that re-exports. `mod x;` declarations are not
//! edges, and comments, string and char literals are skipped. Not understood: `#[path]`
//! attributes and macros that assemble paths (xtask has neither).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path below the crate root (empty: the root).
type ModPath = Vec<String>;

/// One reference from a file into another module.
#[derive(Clone, Debug)]
struct Edge {
    from: ModPath,
    to: ModPath,
    /// `file:line \`path\``, for the failure message.
    evidence: String,
}

/// The module of a file, from its path relative to `src/`.
fn module_of(rel: &Path) -> ModPath {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap_or_default();
    let is_root = parts.is_empty() && (file == "main.rs" || file == "lib.rs");
    if file != "mod.rs" && !is_root {
        parts.push(file.trim_end_matches(".rs").to_string());
    }
    parts
}

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "crate (main.rs)".into()
    } else {
        m.join("::")
    }
}

/// `src` with comments and string and char literals blanked (newlines kept).
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, from: usize, to: usize| {
        for &ch in &c[from..to.min(c.len())] {
            out.push(if ch == '\n' { '\n' } else { ' ' });
        }
    };
    let mut i = 0;
    while i < c.len() {
        let start = i;
        if at(i) == '/' && at(i + 1) == '/' {
            while i < c.len() && at(i) != '\n' {
                i += 1;
            }
        } else if at(i) == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if at(i) == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if (at(i) == 'r' || (at(i) == 'b' && at(i + 1) == 'r'))
            && (i == 0 || !ident(at(i - 1)))
            && {
                let mut j = i + if at(i) == 'b' { 2 } else { 1 };
                while at(j) == '#' {
                    j += 1;
                }
                at(j) == '"'
            }
        {
            // A raw string: r"..", r#".."#, br"..".
            let mut j = i + if at(i) == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            while j < c.len() && !(at(j) == '"' && (1..=hashes).all(|k| at(j + k) == '#')) {
                j += 1;
            }
            i = j + 1 + hashes;
        } else if at(i) == '"' {
            i += 1;
            while i < c.len() && at(i) != '"' {
                i += if at(i) == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if at(i) == '\'' && at(i + 1) == '\\' {
            // An escaped char literal: '\n', '\'', '\u{..}'.
            i += 3;
            while i < c.len() && at(i) != '\'' {
                i += 1;
            }
            i += 1;
        } else if at(i) == '\'' && at(i + 2) == '\'' {
            i += 3;
        } else {
            out.push(at(i));
            i += 1;
            continue;
        }
        blank(&mut out, start, i);
    }
    out
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
}

/// Identifiers, `::` and other punctuation, each with its line.
fn tokens(code: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            out.push((Tok::Ident(word), line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::Sep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// One leaf of a `use` tree: the path as written and the name it binds (None for a
/// glob or `_`).
struct UseLeaf {
    path: Vec<String>,
    name: Option<String>,
    line: usize,
}

fn use_tree(t: &[(Tok, usize)], i: &mut usize, prefix: &[String], out: &mut Vec<UseLeaf>) {
    let mut path = prefix.to_vec();
    if t.get(*i).map(|x| &x.0) == Some(&Tok::Sep) {
        *i += 1; // `use ::std::..`
    }
    while let Some((tok, line)) = t.get(*i) {
        let line = *line;
        match tok {
            Tok::Ident(s) => {
                path.push(s.clone());
                *i += 1;
                if t.get(*i).map(|x| &x.0) == Some(&Tok::Sep) {
                    *i += 1;
                    continue;
                }
                let mut name = path.last().cloned();
                if t.get(*i).map(|x| &x.0) == Some(&Tok::Ident("as".into())) {
                    name = match t.get(*i + 1) {
                        Some((Tok::Ident(n), _)) if n != "_" => Some(n.clone()),
                        _ => None,
                    };
                    *i += 2;
                }
                if path.last().is_some_and(|s| s == "self") && path.len() > 1 {
                    path.pop();
                    if name.as_deref() == Some("self") {
                        name = path.last().cloned();
                    }
                }
                out.push(UseLeaf { path, name, line });
                return;
            }
            Tok::Punct('{') => {
                *i += 1;
                while let Some((tok, _)) = t.get(*i) {
                    match tok {
                        Tok::Punct('}') => {
                            *i += 1;
                            break;
                        }
                        Tok::Punct(',') => *i += 1,
                        _ => use_tree(t, i, &path, out),
                    }
                }
                return;
            }
            Tok::Punct('*') => {
                *i += 1;
                out.push(UseLeaf {
                    path,
                    name: None,
                    line,
                });
                return;
            }
            _ => {
                *i += 1;
                return;
            }
        }
    }
}

/// Every edge of a set of files (paths relative to `src/`, with their text).
fn edges(files: &[(PathBuf, String)]) -> Vec<Edge> {
    let modules: BTreeSet<ModPath> = files.iter().map(|(p, _)| module_of(p)).collect();
    let mut edges = Vec::new();
    for (rel, src) in files {
        let file_mod = module_of(rel);
        let children: BTreeSet<&str> = modules
            .iter()
            .filter(|m| m.len() == file_mod.len() + 1 && m.starts_with(&file_mod))
            .map(|m| m[file_mod.len()].as_str())
            .collect();
        let t = tokens(&code_only(src));

        // The inline module each token is in (`mod tests { .. }`), and the `use` items.
        let mut scopes = Vec::with_capacity(t.len());
        let mut uses: Vec<(Vec<String>, Vec<UseLeaf>)> = Vec::new();
        let mut in_use = vec![false; t.len()];
        let mut stack: Vec<(String, usize)> = Vec::new();
        let mut depth = 0;
        let mut i = 0;
        while i < t.len() {
            let scope: Vec<String> = stack.iter().map(|(n, _)| n.clone()).collect();
            match &t[i].0 {
                Tok::Ident(k) if k == "mod" => {
                    if let (Some((Tok::Ident(name), _)), Some((Tok::Punct('{'), _))) =
                        (t.get(i + 1), t.get(i + 2))
                    {
                        stack.push((name.clone(), depth + 1));
                    }
                }
                Tok::Ident(k) if k == "use" => {
                    let start = i;
                    let mut j = i + 1;
                    let mut leaves = Vec::new();
                    use_tree(&t, &mut j, &[], &mut leaves);
                    while j < t.len() && t[j].0 != Tok::Punct(';') {
                        j += 1;
                    }
                    for flag in &mut in_use[start..=j.min(t.len() - 1)] {
                        *flag = true;
                    }
                    for _ in start..=j.min(t.len() - 1) {
                        scopes.push(scope.clone());
                    }
                    uses.push((scope, leaves));
                    i = j + 1;
                    continue;
                }
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    depth -= 1;
                    while stack.last().is_some_and(|&(_, d)| d > depth) {
                        stack.pop();
                    }
                }
                _ => {}
            }
            scopes.push(scope);
            i += 1;
        }

        // A path as written, to an absolute one (None: not into this crate).
        let absolute = |segs: &[String],
                        scope: &[String],
                        aliases: &BTreeMap<String, ModPath>|
         -> Option<Vec<String>> {
            let here: Vec<String> = file_mod.iter().chain(scope).cloned().collect();
            let first = segs.first()?.as_str();
            match first {
                "crate" => Some(segs[1..].to_vec()),
                "self" => Some(here.into_iter().chain(segs[1..].iter().cloned()).collect()),
                "super" => {
                    let ups = segs.iter().take_while(|s| *s == "super").count();
                    let base = here.get(..here.len().checked_sub(ups)?)?.to_vec();
                    Some(
                        base.into_iter()
                            .chain(segs[ups..].iter().cloned())
                            .collect(),
                    )
                }
                _ if scope.is_empty() && children.contains(first) => {
                    Some(file_mod.iter().chain(segs).cloned().collect())
                }
                _ => aliases
                    .get(first)
                    .map(|m| m.iter().chain(&segs[1..]).cloned().collect()),
            }
        };
        // The module a path names: its longest prefix that is a file's module.
        let target = |abs: &[String]| -> ModPath {
            (0..=abs.len())
                .rev()
                .map(|n| abs[..n].to_vec())
                .find(|p| modules.contains(p))
                .unwrap_or_default()
        };

        let no_aliases = BTreeMap::new();
        let mut aliases = BTreeMap::new();
        for (scope, leaves) in &uses {
            for leaf in leaves {
                if let (Some(name), Some(abs)) =
                    (&leaf.name, absolute(&leaf.path, scope, &no_aliases))
                    && modules.contains(&abs)
                {
                    aliases.insert(name.clone(), abs);
                }
            }
        }
        let mut add = |abs: Vec<String>, line: usize, written: String| {
            let to = target(&abs);
            if to != file_mod {
                edges.push(Edge {
                    from: file_mod.clone(),
                    to,
                    evidence: format!("{}:{line} `{written}`", rel.display()),
                });
            }
        };
        for (scope, leaves) in &uses {
            for leaf in leaves {
                if let Some(abs) = absolute(&leaf.path, scope, &aliases) {
                    add(abs, leaf.line, format!("use {}", leaf.path.join("::")));
                }
            }
        }
        // Paths in code: `a::b::c` not preceded by `::`.
        let mut i = 0;
        while i < t.len() {
            let starts = matches!(t[i].0, Tok::Ident(_))
                && !in_use[i]
                && (i == 0 || t[i - 1].0 != Tok::Sep)
                && t.get(i + 1).map(|x| &x.0) == Some(&Tok::Sep);
            if !starts {
                i += 1;
                continue;
            }
            let mut segs = Vec::new();
            let mut j = i;
            while let Some((Tok::Ident(s), _)) = t.get(j) {
                segs.push(s.clone());
                if t.get(j + 1).map(|x| &x.0) != Some(&Tok::Sep) {
                    break;
                }
                j += 2;
            }
            if let Some(abs) = absolute(&segs, &scopes[i], &aliases) {
                add(abs, t[i].1, segs.join("::"));
            }
            i = j + 1;
        }
    }
    edges
}

/// The cycles of the graph with every module merged into its ancestor at each depth:
/// one description per depth that has one.
fn cycles(edges: &[Edge]) -> Vec<String> {
    let max_depth = edges
        .iter()
        .flat_map(|e| [e.from.len(), e.to.len()])
        .max()
        .unwrap_or(0);
    let mut found = Vec::new();
    for d in 1..=max_depth {
        let cut = |m: &ModPath| m[..m.len().min(d)].to_vec();
        let mut graph: BTreeMap<ModPath, BTreeMap<ModPath, &Edge>> = BTreeMap::new();
        for e in edges {
            let (a, b) = (cut(&e.from), cut(&e.to));
            if a != b {
                graph.entry(a).or_default().entry(b).or_insert(e);
            }
        }
        if let Some(cycle) = find_cycle(&graph) {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|w| {
                    format!(
                        "    {} -> {}: {}",
                        show(&w[0]),
                        show(&w[1]),
                        graph[&w[0]][&w[1]].evidence
                    )
                })
                .collect();
            found.push(format!(
                "import cycle between modules at depth {d}:\n{}",
                steps.join("\n")
            ));
        }
    }
    found
}

/// A cycle (first node repeated at the end), by depth-first search.
fn find_cycle(graph: &BTreeMap<ModPath, BTreeMap<ModPath, &Edge>>) -> Option<Vec<ModPath>> {
    fn visit(
        n: &ModPath,
        graph: &BTreeMap<ModPath, BTreeMap<ModPath, &Edge>>,
        done: &mut BTreeSet<ModPath>,
        path: &mut Vec<ModPath>,
    ) -> Option<Vec<ModPath>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut cycle = path[at..].to_vec();
            cycle.push(n.clone());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.clone());
        for next in graph.get(n).into_iter().flat_map(|m| m.keys()) {
            if let Some(c) = visit(next, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

/// Every `.rs` file under `dir`, relative to `root`, with its text.
fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("xtask/src is readable")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_tree(root, &path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&path).expect("source is UTF-8");
            out.push((path.strip_prefix(root).expect("below root").into(), text));
        }
    }
}

fn files(list: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
    list.iter()
        .map(|(p, s)| (PathBuf::from(p), s.to_string()))
        .collect()
}

fn pairs(edges: &[Edge]) -> BTreeSet<(String, String)> {
    edges.iter().map(|e| (show(&e.from), show(&e.to))).collect()
}

#[test]
fn xtask_modules_import_each_other_in_no_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut tree = Vec::new();
    read_tree(&root, &root, &mut tree);
    let edges = edges(&tree);
    // The parser sees the real tree: the command line uses the suites, a suite the
    // harness, the bench's report its model.
    let seen = pairs(&edges);
    for (a, b) in [
        ("crate (main.rs)", "suites::faults"),
        ("suites::echo", "harness"),
        ("suites::bench::report", "suites::bench::model"),
        ("harness", "build::kernel"),
    ] {
        assert!(
            seen.contains(&(a.into(), b.into())),
            "the test did not see {a} -> {b}; edges: {seen:?}"
        );
    }
    let found = cycles(&edges);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn a_cycle_between_two_files_fails() {
    let edges = edges(&files(&[
        ("main.rs", "mod a;\nmod b;\nfn main() { a::f() }"),
        ("a.rs", "use crate::b::X;\npub fn f() {}"),
        ("b.rs", "pub struct X;\nfn g() { crate::a::f() }"),
    ]));
    let found = cycles(&edges);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("a.rs:1 `use crate::b::X`"),
        "{}",
        found[0]
    );
    assert!(found[0].contains("b.rs:2 `crate::a::f`"), "{}", found[0]);
}

#[test]
fn a_cycle_between_layers_fails_when_no_two_files_form_one() {
    let edges = edges(&files(&[
        ("main.rs", "mod low;\nmod high;"),
        ("low/mod.rs", "pub mod x;\npub mod y;"),
        ("low/x.rs", "use crate::high::z::Z;"),
        ("low/y.rs", "pub struct Y;"),
        ("high/mod.rs", "pub mod z;\npub mod w;"),
        ("high/z.rs", "pub struct Z;"),
        ("high/w.rs", "use crate::low::y::Y;"),
    ]));
    let found = cycles(&edges);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("at depth 1"), "{}", found[0]);
}

#[test]
fn reads_groups_aliases_self_super_and_skips_comments_and_strings() {
    let edges = edges(&files(&[
        ("main.rs", "mod a;\nmod b;\nmod c;\nmod d;\nmod e;"),
        (
            "a.rs",
            "use crate::{b::{self, X}, c as see};\n\
             // crate::d::gone() in a comment\n\
             fn f() { let _ = \"crate::d::y and '\"; let q = '\"'; b::g(); see::h(); }\n\
             #[cfg(test)]\nmod tests {\n    use super::*;\n    fn t() { self::super::f(); }\n}\n\
             fn late() { let s = r#\"crate::d::z\"#; super::e::k(); }",
        ),
        ("b.rs", "pub struct X;\npub fn g() {}"),
        ("c.rs", "pub fn h() {}"),
        ("d.rs", ""),
        ("e/mod.rs", "pub fn k() {}"),
    ]));
    let a: BTreeSet<(String, String)> = pairs(&edges)
        .into_iter()
        .filter(|(from, _)| from == "a")
        .collect();
    let expected: BTreeSet<(String, String)> = [("a", "b"), ("a", "c"), ("a", "e")]
        .iter()
        .map(|(x, y)| (x.to_string(), y.to_string()))
        .collect();
    assert_eq!(a, expected);
    assert!(cycles(&edges).is_empty());
}

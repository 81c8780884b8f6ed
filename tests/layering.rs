//! The services are layered: no folder of `src/services/` reaches, through another, back
//! to itself. This reads the sources (no server runs): every `crate::services::X` and
//! `super::X` path that leads from one service folder into another is an edge, and a
//! cycle among the edges fails the test, naming the files that make it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Edges = BTreeMap<String, BTreeMap<String, BTreeSet<PathBuf>>>;

#[test]
fn service_folders_import_each_other_without_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/services");
    let edges = edges(&root);
    assert!(edges.len() > 10, "the services were not read: {edges:?}");
    if let Some(cycle) = find_cycle(&edges) {
        let mut report = format!("import cycle between service folders: {}\n", cycle.join(" -> "));
        for pair in cycle.windows(2) {
            let files = &edges[&pair[0]][&pair[1]];
            report += &format!("  {} -> {}: {files:?}\n", pair[0], pair[1]);
        }
        panic!("{report}");
    }
}

#[test]
fn a_cycle_is_found() {
    let mut edges = Edges::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        edges.entry(from.into()).or_default().entry(to.into()).or_default().insert(PathBuf::from("x.rs"));
    }
    assert_eq!(find_cycle(&edges), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    edges.get_mut("c").unwrap().remove("a");
    assert_eq!(find_cycle(&edges), None);
    assert_eq!(
        paths_in("use super::{rooms::Rooms, sender};\nuse crate::services::a::B;"),
        vec![(1, "rooms".to_owned()), (1, "sender".to_owned()), (0, "a".to_owned())]
    );
}

/// For each service folder, the folders its files name, with the files naming them.
fn edges(root: &Path) -> Edges {
    let folders: BTreeSet<String> = fs::read_dir(root)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let mut edges = Edges::new();
    for file in rust_files(root) {
        let relative = file.strip_prefix(root).unwrap().with_extension("");
        let mut module: Vec<String> = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
        if module.last().is_some_and(|last| last == "mod") {
            module.pop();
        }
        let Some(from) = module.first().filter(|first| folders.contains(*first)).cloned() else { continue };
        let text = fs::read_to_string(&file).unwrap();
        for (supers, name) in paths_in(&text) {
            // `super::` counts from the file's module; only a path reaching `services`
            // itself names a folder.
            let from_services = supers == 0 || supers == module.len();
            if from_services && folders.contains(&name) && name != from {
                edges.entry(from.clone()).or_default().entry(name).or_default().insert(file.clone());
            }
        }
    }
    edges
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The first segment after `crate::services::` (0) or after a run of `super::` (their
/// count), one per name in a `{…}` group.
fn paths_in(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = [rest.find("crate::services::"), rest.find("super::")].into_iter().flatten().min() {
        let (supers, mut tail) = match rest[at..].strip_prefix("crate::services::") {
            Some(tail) => (0, tail),
            None => {
                let mut tail = &rest[at..];
                let mut count = 0;
                while let Some(next) = tail.strip_prefix("super::") {
                    count += 1;
                    tail = next;
                }
                (count, tail)
            }
        };
        if let Some(group) = tail.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                found.extend(first_name(item.trim()).map(|name| (supers, name)));
            }
            tail = &group[end..];
        } else {
            found.extend(first_name(tail).map(|name| (supers, name)));
        }
        rest = tail;
    }
    found
}

fn first_name(path: &str) -> Option<String> {
    let name: String = path.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some(name)
}

/// A cycle, as the folders along it with the first repeated at the end.
fn find_cycle(edges: &Edges) -> Option<Vec<String>> {
    fn visit(node: &str, edges: &Edges, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flat_map(BTreeMap::keys) {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

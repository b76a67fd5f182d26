//! Which connectors are loaded: the first-party ones embedded in the binary,
//! then every `.wasm` in the plugins directory (dot files, such as a copy
//! still being written before its rename, are not read). Reloading picks up
//! added, replaced and removed files without a restart; a broken file is
//! refused and the version it would replace keeps serving, and a file whose
//! id is already served by another never takes it over. Refused files are
//! remembered with their reason until they change. Callers hold an
//! `Arc<Connector>`, so a call in flight finishes on the version it started with.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::SystemTime,
};

use crate::{
    builtin::Builtin,
    crypto::sha256_hex,
    runtime::{Connector, Runtime},
};

/// What a reload changed, and what is refused after it.
#[derive(Debug, Default, Clone)]
pub struct ReloadReport {
    pub loaded: Vec<String>,
    pub unloaded: Vec<String>,
    /// Every file refused now (not only since the last scan), and why.
    pub refused: Vec<(String, String)>,
}

struct FileEntry {
    /// Modification time and size when last read: unchanged files are not
    /// read again.
    stamp: (Option<SystemTime>, u64),
    sha256: String,
    plugin: Option<Arc<Connector>>,
    /// Why the file's current content was refused; a previous version may
    /// still serve (`plugin`).
    refused: Option<String>,
}

#[derive(Default)]
struct Loaded {
    builtin: Vec<Arc<Connector>>,
    files: BTreeMap<PathBuf, FileEntry>,
    by_id: BTreeMap<String, Arc<Connector>>,
    /// Files whose connector is loaded but not served: its id is taken.
    conflicts: BTreeMap<PathBuf, String>,
}

pub struct Registry {
    dir: PathBuf,
    loaded: RwLock<Loaded>,
    /// One reload at a time; calls keep reading `loaded` meanwhile.
    reloading: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Loads the first-party connectors (a failure here is fatal: the binary
    /// is broken) and then the plugins directory.
    pub async fn load(runtime: &Runtime, builtin: &[Builtin], dir: PathBuf) -> anyhow::Result<Self> {
        let mut loaded = Loaded::default();
        let sources: Vec<(&str, &[u8], &str)> = builtin.iter().map(|b| (b.name, b.wasm, b.sha256)).collect();
        for connector in runtime.load_all(&sources).await {
            loaded.builtin.push(Arc::new(connector?));
        }
        let registry = Self { dir, loaded: RwLock::new(loaded), reloading: tokio::sync::Mutex::new(()) };
        registry.reload(runtime).await?;
        Ok(registry)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Connector>> {
        self.read().by_id.get(id).cloned()
    }

    /// Every loaded connector, by id.
    pub fn all(&self) -> Vec<Arc<Connector>> {
        self.read().by_id.values().cloned().collect()
    }

    /// Every file of the plugins directory refused now, and why.
    pub fn refused(&self) -> Vec<(String, String)> {
        refused_files(&self.read())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.loaded.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Brings the loaded set in line with the plugins directory.
    pub async fn reload(&self, runtime: &Runtime) -> anyhow::Result<ReloadReport> {
        let _one_at_a_time = self.reloading.lock().await;
        let mut report = ReloadReport::default();
        let paths = wasm_files(&self.dir)?;

        // Decide what to (re)load without holding the lock across awaits.
        let mut next: BTreeMap<PathBuf, FileEntry> = BTreeMap::new();
        let mut changed = Vec::new();
        for path in paths {
            let shown = path.display().to_string();
            let stamp = match std::fs::metadata(&path) {
                Ok(m) => (m.modified().ok(), m.len()),
                Err(e) => {
                    report.refused.push((shown, e.to_string()));
                    continue;
                }
            };
            let previous = {
                let loaded = self.read();
                loaded.files.get(&path).map(|e| (e.stamp, e.sha256.clone(), e.plugin.clone(), e.refused.clone()))
            };
            if let Some((old_stamp, sha, plugin, refused)) = &previous
                && *old_stamp == stamp
            {
                let (sha256, plugin, refused) = (sha.clone(), plugin.clone(), refused.clone());
                next.insert(path, FileEntry { stamp, sha256, plugin, refused });
                continue;
            }
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    report.refused.push((shown, e.to_string()));
                    continue;
                }
            };
            let sha256 = sha256_hex(&bytes);
            if let Some((_, old_sha, plugin, refused)) = &previous
                && *old_sha == sha256
            {
                next.insert(path, FileEntry { stamp, sha256, plugin: plugin.clone(), refused: refused.clone() });
                continue;
            }
            let kept = previous.and_then(|(_, _, plugin, _)| plugin);
            changed.push((path, shown, stamp, bytes, sha256, kept));
        }
        let sources: Vec<(&str, &[u8], &str)> = changed
            .iter()
            .map(|(_, shown, _, bytes, sha256, _)| (shown.as_str(), bytes.as_slice(), sha256.as_str()))
            .collect();
        let outcomes = runtime.load_all(&sources).await;
        for ((path, _, stamp, _, sha256, kept), outcome) in changed.into_iter().zip(outcomes) {
            match outcome {
                Ok(plugin) => {
                    next.insert(path, FileEntry { stamp, sha256, plugin: Some(Arc::new(plugin)), refused: None });
                }
                Err(e) => {
                    tracing::error!(error = %e, "plugin refused; the previously loaded version, if any, keeps serving");
                    // Remember the broken file so it is not retried until it changes.
                    next.insert(path, FileEntry { stamp, sha256, plugin: kept, refused: Some(e.to_string()) });
                }
            }
        }

        let mut loaded = self.loaded.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut by_id: BTreeMap<String, Arc<Connector>> = BTreeMap::new();
        for plugin in &loaded.builtin {
            by_id.insert(plugin.manifest.id.clone(), plugin.clone());
        }
        // A connector serving an id keeps it: the file that served it
        // before this scan goes first, whatever the names of newcomers.
        let serving = |path: &PathBuf, plugin: &Arc<Connector>| {
            loaded.by_id.get(&plugin.manifest.id).is_some_and(|old| old.source == path.display().to_string())
        };
        let mut candidates: Vec<(&PathBuf, &Arc<Connector>)> =
            next.iter().filter_map(|(path, entry)| entry.plugin.as_ref().map(|p| (path, p))).collect();
        candidates.sort_by_key(|(path, plugin)| !serving(path, plugin));
        let mut conflicts = BTreeMap::new();
        for (path, plugin) in candidates {
            if let Some(existing) = by_id.get(&plugin.manifest.id) {
                let why = format!(
                    "a connector with id {:?} is already served from {}; remove one of the two files",
                    plugin.manifest.id, existing.source
                );
                if loaded.conflicts.get(path) != Some(&why) {
                    tracing::error!(file = %path.display(), "{why}; this file is not served");
                }
                conflicts.insert(path.clone(), why);
                continue;
            }
            by_id.insert(plugin.manifest.id.clone(), plugin.clone());
        }
        for (id, plugin) in &by_id {
            match loaded.by_id.get(id) {
                Some(old) if Arc::ptr_eq(old, plugin) => {}
                _ => {
                    tracing::info!(id = %id, version = %plugin.manifest.version, wit = plugin.wit_version, source = %plugin.source, sha256 = %plugin.sha256, "connector loaded");
                    report.loaded.push(id.clone());
                }
            }
        }
        for id in loaded.by_id.keys() {
            if !by_id.contains_key(id) {
                tracing::info!(id = %id, "connector unloaded");
                report.unloaded.push(id.clone());
            }
        }
        loaded.files = next;
        loaded.by_id = by_id;
        loaded.conflicts = conflicts;
        report.refused.extend(refused_files(&loaded));
        Ok(report)
    }
}

fn refused_files(loaded: &Loaded) -> Vec<(String, String)> {
    let broken = loaded.files.iter().filter_map(|(path, e)| e.refused.clone().map(|why| (path.clone(), why)));
    let mut refused: Vec<(PathBuf, String)> =
        broken.chain(loaded.conflicts.iter().map(|(path, why)| (path.clone(), why.clone()))).collect();
    refused.sort();
    refused.into_iter().map(|(path, why)| (path.display().to_string(), why)).collect()
}

/// The `.wasm` files of `dir`, sorted. Dot files are left out: copying a
/// component to `.name.wasm` and renaming it when complete means a
/// half-written file is never read.
fn wasm_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .filter(|p| p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(anyhow::anyhow!("cannot read plugins dir {}: {e}", dir.display())),
    };
    files.sort();
    Ok(files)
}

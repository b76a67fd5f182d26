//! Which connectors are loaded: the first-party ones embedded in the binary,
//! then every `.wasm` in the plugins directory. Reloading picks up added,
//! replaced and removed files without a restart; a broken file is refused
//! and the version it would replace keeps serving. Callers hold an
//! `Arc<Plugin>`, so a call in flight finishes on the version it started with.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::SystemTime,
};

use crate::{
    crypto::sha256_hex,
    runtime::{Plugin, Runtime},
};

/// What changed in a reload.
#[derive(Debug, Default, Clone)]
pub struct ReloadReport {
    pub loaded: Vec<String>,
    pub unloaded: Vec<String>,
    /// File and why it was refused.
    pub refused: Vec<(String, String)>,
}

struct FileEntry {
    /// Modification time and size when last read: unchanged files are not
    /// read again.
    stamp: (Option<SystemTime>, u64),
    sha256: String,
    plugin: Option<Arc<Plugin>>,
}

#[derive(Default)]
struct Loaded {
    builtin: Vec<Arc<Plugin>>,
    files: BTreeMap<PathBuf, FileEntry>,
    by_id: BTreeMap<String, Arc<Plugin>>,
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
    pub async fn load(runtime: &Runtime, builtin: &[(&str, &[u8])], dir: PathBuf) -> anyhow::Result<Self> {
        let mut loaded = Loaded::default();
        for (name, bytes) in builtin {
            loaded.builtin.push(Arc::new(runtime.load(name, bytes).await?));
        }
        let registry = Self { dir, loaded: RwLock::new(loaded), reloading: tokio::sync::Mutex::new(()) };
        registry.reload(runtime).await?;
        Ok(registry)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Plugin>> {
        self.read().by_id.get(id).cloned()
    }

    /// Every loaded connector, by id.
    pub fn all(&self) -> Vec<Arc<Plugin>> {
        self.read().by_id.values().cloned().collect()
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
                loaded.files.get(&path).map(|e| (e.stamp, e.sha256.clone(), e.plugin.clone()))
            };
            if let Some((old_stamp, sha, plugin)) = &previous
                && *old_stamp == stamp
            {
                next.insert(path, FileEntry { stamp, sha256: sha.clone(), plugin: plugin.clone() });
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
            if let Some((_, old_sha, plugin)) = &previous
                && *old_sha == sha256
            {
                next.insert(path, FileEntry { stamp, sha256, plugin: plugin.clone() });
                continue;
            }
            match runtime.load(&shown, &bytes).await {
                Ok(plugin) => {
                    next.insert(path, FileEntry { stamp, sha256, plugin: Some(Arc::new(plugin)) });
                }
                Err(e) => {
                    tracing::error!(error = %e, "plugin refused; the previously loaded version, if any, keeps serving");
                    report.refused.push((shown, e.to_string()));
                    // Remember the broken file so it is not retried until it changes.
                    let kept = previous.and_then(|(_, _, plugin)| plugin);
                    next.insert(path, FileEntry { stamp, sha256, plugin: kept });
                }
            }
        }

        let mut loaded = self.loaded.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut by_id: BTreeMap<String, Arc<Plugin>> = BTreeMap::new();
        for plugin in &loaded.builtin {
            by_id.insert(plugin.manifest.id.clone(), plugin.clone());
        }
        for (path, entry) in &next {
            let Some(plugin) = &entry.plugin else { continue };
            if let Some(existing) = by_id.get(&plugin.manifest.id) {
                let why =
                    format!("a connector with id {:?} is already loaded from {}", plugin.manifest.id, existing.source);
                tracing::error!(file = %path.display(), "{why}; skipped");
                report.refused.push((path.display().to_string(), why));
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
        Ok(report)
    }
}

fn wasm_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(anyhow::anyhow!("cannot read plugins dir {}: {e}", dir.display())),
    };
    files.sort();
    Ok(files)
}

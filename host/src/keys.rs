//! Where the master key lives and how it changes: the key file, kept
//! outside the data directory (so a copy of that directory opens nothing),
//! found or created durably on the first start, never created while the
//! database holds secrets sealed with a key that is not there; the key ring
//! it holds; and `gatehouse keys rotate`, which re-seals every stored secret
//! under a new key. Sealing itself is `crypto`'s.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt, fs, io,
    path::{Path, PathBuf},
};

use secrecy::{ExposeSecret, SecretSlice, SecretString};

use crate::{
    clock::Timestamp,
    config::KeyConfig,
    crypto::{self, MasterKey},
    files::{self, Existing},
    store::{Store, StoreError, sealed::SealedValue},
};

/// Where versions before the key file moved out created it.
pub const LEGACY_KEY_FILE: &str = "master.key";
/// Held shared by every `serve` of a data directory, alone by `keys rotate`.
const LOCK_FILE: &str = "gatehouse.lock";
/// What the compiled-component cache's MAC key is derived for.
pub const COMPONENT_CACHE_PURPOSE: &str = "gatehouse component cache v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("GATEHOUSE_MASTER_KEY and --master-key-file (GATEHOUSE_MASTER_KEY_FILE) are both set; keep one of them")]
    TwoSources,
    #[error(
        "GATEHOUSE_MASTER_KEY must be base64 of exactly 32 bytes (e.g. the output of `head -c 32 /dev/urandom | base64`)"
    )]
    BadEnvKey,
    #[error(
        "no home directory is known (HOME is not set), so there is no default place for the master key file; pass --master-key-file PATH, outside the data directory"
    )]
    NoDefaultPath,
    #[error(
        "{} is not a master key file (base64 of 32 bytes on each line, the first one sealing); restore it from your backup",
        .0.display()
    )]
    BadKeyFile(PathBuf),
    #[error("cannot read or write the master key file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the master key file {} is inside the data directory {}, so any copy of that directory (a backup, a volume snapshot) would open every stored secret. {way_out}; or pass --allow-key-in-data-dir to keep it there",
        path.display(), data_dir.display()
    )]
    InsideDataDir { path: PathBuf, data_dir: PathBuf, way_out: String },
    #[error(
        "found the master key inside the data directory ({}), where earlier versions created it: any copy of that directory opens every stored secret. Move it out before starting: `{}`{}; or pass --allow-key-in-data-dir to keep using it there",
        legacy.display(), Move(legacy, dest), start_with(dest, default)
    )]
    LegacyKey { legacy: PathBuf, dest: PathBuf, default: Option<PathBuf> },
    #[error(
        "{} inside the data directory holds a master key ({}) besides the one read from {from}: {}",
        legacy.display(), ids.join(", "), advice
    )]
    StrayKey { legacy: PathBuf, ids: Vec<String>, from: KeySource, advice: String },
    #[error(
        "there is no master key file at {}, but the database holds {count} secrets sealed with key {}. Put that key back (restore the file from your backup to {}, or name it with --master-key-file or GATEHOUSE_MASTER_KEY): a new key would not open them",
        path.display(), ids.join(", "), path.display()
    )]
    Missing { path: PathBuf, count: u64, ids: Vec<String> },
    #[error(
        "there is no master key file at {}; `gatehouse serve` creates one on its first start (or name yours with --master-key-file or GATEHOUSE_MASTER_KEY)",
        .0.display()
    )]
    NoKeyFile(PathBuf),
    #[error(
        "a `gatehouse serve` is using the data directory {} (it holds {LOCK_FILE}); stop every server using it and run this again: a running server would keep sealing with the old key",
        .0.display()
    )]
    InUse(PathBuf),
    #[error("a `gatehouse keys rotate` is running on the data directory {}; start the server when it has finished", .0.display())]
    Rotating(PathBuf),
    #[error(
        "{count} stored secrets do not open with the loaded keys ({}), so nothing was changed. Put back the key they were sealed with (key {}) as another line of the key file, or delete what they belong to, then rotate again",
        kinds, ids.join(", ")
    )]
    Unreadable { count: u64, kinds: String, ids: Vec<String> },
    #[error("the new key is the key in use ({0}); rotate to another one")]
    SameKey(String),
    #[error(
        "the master key comes from GATEHOUSE_MASTER_KEY, which this command cannot change: pass --new-key-file PATH (created when missing), then start the server with --master-key-file PATH instead"
    )]
    EnvNeedsNewKeyFile,
    #[error(
        "{count} secrets were sealed with a retired key while the rotation ran (is a server using this database from another data directory?); the key file still holds both keys: stop it and run `gatehouse keys rotate` again"
    )]
    StillInUse { count: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A shell command moving a key file to a private directory.
struct Move<'a>(&'a Path, &'a Path);

impl fmt::Display for Move<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.1.parent().unwrap_or(Path::new("."));
        write!(f, "mkdir -p -m 700 {} && mv {} {}", quote(dir), quote(self.0), quote(self.1))
    }
}

fn quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    shlex::try_quote(&text).map(|q| q.into_owned()).unwrap_or_else(|_| text.into_owned())
}

/// What to add to the start command when `dest` is not the default place.
fn start_with(dest: &Path, default: &Option<PathBuf>) -> String {
    if default.as_deref().map(resolved).as_deref() == Some(dest) {
        ", then start again".into()
    } else {
        format!(", then start with --master-key-file {}", quote(dest))
    }
}

/// Where the key ring was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env => f.write_str("GATEHOUSE_MASTER_KEY"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What locating the key depends on, gathered once so tests can vary it.
pub struct Locator<'a> {
    pub config: &'a KeyConfig,
    pub data_dir: &'a Path,
    /// `GATEHOUSE_MASTER_KEY`.
    pub env: Option<SecretString>,
    /// Where the key file goes when no path is given.
    pub default_file: Option<PathBuf>,
}

impl<'a> Locator<'a> {
    /// From the environment of this process.
    pub fn from_env(config: &'a KeyConfig, data_dir: &'a Path) -> Self {
        let env = std::env::var("GATEHOUSE_MASTER_KEY").ok().filter(|v| !v.is_empty()).map(SecretString::from);
        Self { config, data_dir, env, default_file: default_key_file() }
    }

    /// Somewhere outside the data directory to suggest moving a key to.
    fn outside(&self) -> PathBuf {
        let dir = resolved(self.data_dir);
        self.default_file.as_deref().map(resolved).filter(|p| !p.starts_with(&dir)).unwrap_or_else(|| {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            dir.with_file_name(format!("{name}-master.key"))
        })
    }
}

/// The key that authenticates a developer's component cache (`gatehouse
/// plugins test --cache-dir`), which has no master key to derive one from:
/// 32 random bytes kept in `<dir>/cache.key` (0600, in a 0700 dir), created
/// on first use. Compiled code is only loaded from that cache when it
/// carries this key's MAC, so a file someone else dropped in is recompiled
/// rather than run.
pub fn local_cache_key(dir: &Path) -> anyhow::Result<SecretSlice<u8>> {
    use anyhow::Context;
    let path = dir.join("cache.key");
    files::create_private_dir(dir).with_context(|| format!("cannot create the cache dir {}", dir.display()))?;
    let read = || -> anyhow::Result<Option<SecretSlice<u8>>> {
        match fs::read_to_string(&path) {
            Ok(text) => Ok(crypto::parse_key(&text)
                .map(Some)
                .with_context(|| format!("{} is not a cache key; delete it (the cache is rebuilt)", path.display()))?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    };
    if let Some(key) = read()? {
        return Ok(key);
    }
    let key = crypto::generate_key();
    match files::write_private(&path, crypto::encode_key(&key).expose_secret().as_bytes(), Existing::Keep, false) {
        Ok(()) => Ok(key),
        // Another process created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read()?.context("the cache key vanished; run again"),
        Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
}

/// `$XDG_CONFIG_HOME/gatehouse/master.key`, else
/// `~/.config/gatehouse/master.key`: per user, apart from any data.
pub fn default_key_file() -> Option<PathBuf> {
    use etcetera::BaseStrategy;
    etcetera::choose_base_strategy().ok().map(|s| s.config_dir().join("gatehouse").join("master.key"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// `serve`: a first start creates the key.
    IfMissing,
    /// The `keys` commands work on an existing key.
    Never,
}

/// A loaded key ring, the keys it was made of (to write it back), and what
/// the database holds that it cannot open.
pub struct LoadedKeys {
    pub ring: MasterKey,
    pub source: KeySource,
    /// Whether this call created the key file.
    pub created: bool,
    /// Key ids the database uses that the ring lacks, with their counts.
    pub missing: BTreeMap<String, u64>,
    keys: Vec<SecretSlice<u8>>,
}

impl fmt::Debug for LoadedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedKeys")
            .field("ring", &self.ring)
            .field("source", &self.source)
            .field("created", &self.created)
            .field("missing", &self.missing)
            .finish_non_exhaustive()
    }
}

/// Finds and reads the key ring, refusing what would expose or lose
/// secrets: a key file inside the data directory (unless allowed), the
/// key an earlier version left in the data directory, and a new key while
/// the database holds secrets sealed with another.
pub async fn load(loc: &Locator<'_>, store: &Store, create: Create) -> Result<LoadedKeys, KeyError> {
    let in_use = store.key_ids_in_use().await?;
    // Absolute, so the commands a refusal suggests work from anywhere.
    let legacy = resolved(&loc.data_dir.join(LEGACY_KEY_FILE));
    let legacy_present = fs::symlink_metadata(&legacy).is_ok();
    let allow = loc.config.allow_key_in_data_dir;
    let source = match (&loc.env, &loc.config.master_key_file) {
        (Some(_), Some(_)) => return Err(KeyError::TwoSources),
        (Some(_), None) => KeySource::Env,
        (None, Some(path)) => KeySource::File(path.clone()),
        (None, None) if allow && legacy_present => KeySource::File(legacy.clone()),
        (None, None) => KeySource::File(loc.default_file.clone().ok_or(KeyError::NoDefaultPath)?),
    };
    if let KeySource::File(path) = &source
        && allow
        && is_inside(path, loc.data_dir)
    {
        tracing::warn!(
            file = %path.display(),
            "the master key file is inside the data dir (--allow-key-in-data-dir): a copy of the data dir opens every stored secret"
        );
    }
    if let KeySource::File(path) = &source
        && !allow
        && is_inside(path, loc.data_dir)
    {
        let (path, dest, default) = (resolved(path), loc.outside(), loc.default_file.clone());
        let way_out = if path.exists() {
            format!("Move it out: `{}`{}", Move(&path, &dest), start_with(&dest, &default))
        } else {
            format!("Name a file outside it, such as {}", quote(&dest))
        };
        return Err(KeyError::InsideDataDir { path, data_dir: resolved(loc.data_dir), way_out });
    }
    let mut created = false;
    let keys = match &source {
        KeySource::Env => {
            let text = loc.env.as_ref().expect("the source is the environment");
            vec![crypto::parse_key(text.expose_secret()).ok_or(KeyError::BadEnvKey)?]
        }
        KeySource::File(path) => match read_ring_file(path)? {
            Some(keys) => keys,
            None if legacy_present && !allow => {
                return Err(KeyError::LegacyKey { legacy, dest: resolved(path), default: loc.default_file.clone() });
            }
            None if !in_use.is_empty() => {
                return Err(KeyError::Missing {
                    path: path.clone(),
                    count: in_use.values().sum(),
                    ids: in_use.keys().cloned().collect(),
                });
            }
            None if create == Create::Never => return Err(KeyError::NoKeyFile(path.clone())),
            None => {
                let (keys, new) = create_key_file(path)?;
                created = new;
                keys
            }
        },
    };
    let ring = MasterKey::ring(&keys[0], &keys[1..]);
    if legacy_present && !allow && source != KeySource::File(legacy.clone()) {
        return Err(stray_key(&legacy, &ring, &in_use, &source));
    }
    let missing = in_use.into_iter().filter(|(id, _)| !ring.has(id)).collect();
    Ok(LoadedKeys { ring, source, created, missing, keys })
}

/// The refusal for a key left in the data directory while another is used:
/// delete it when nothing needs it, else fold it into the ring.
fn stray_key(legacy: &Path, ring: &MasterKey, in_use: &BTreeMap<String, u64>, source: &KeySource) -> KeyError {
    let ids: Vec<String> = match read_ring_file(legacy) {
        Ok(Some(keys)) => keys.iter().map(crypto::key_id).collect(),
        _ => Vec::new(),
    };
    let needed: u64 = ids.iter().filter(|id| !ring.has(id)).filter_map(|id| in_use.get(id)).sum();
    let advice = if needed == 0 {
        format!(
            "it opens nothing the loaded key does not, so delete it (`rm {}`): a copy of the data directory would carry it. Or pass --allow-key-in-data-dir",
            quote(legacy)
        )
    } else {
        format!(
            "{needed} stored secrets are sealed with it and would be lost. Add its line to the key file (after the first line), delete it from the data directory, and run `gatehouse keys rotate`, which re-seals them under the first key; or pass --allow-key-in-data-dir"
        )
    };
    KeyError::StrayKey { legacy: legacy.to_path_buf(), ids, from: source.clone(), advice }
}

/// Reads a key file: base64 keys, one a line, the first sealing; blank
/// lines and lines starting with `#` are skipped. `None` when there is no
/// file.
fn read_ring_file(path: &Path) -> Result<Option<Vec<SecretSlice<u8>>>, KeyError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => SecretString::from(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(KeyError::Io { path: path.to_path_buf(), source }),
    };
    let keys: Option<Vec<_>> = text
        .expose_secret()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(crypto::parse_key)
        .collect();
    match keys {
        Some(keys) if !keys.is_empty() => {
            if let Ok(Some(mode)) = files::shared_mode(path) {
                tracing::warn!(
                    file = %path.display(),
                    "the master key file is mode {mode:o}, readable by other users: run `chmod 600 {}`",
                    quote(path)
                );
            }
            Ok(Some(keys))
        }
        _ => Err(KeyError::BadKeyFile(path.to_path_buf())),
    }
}

/// Writes the ring, replacing the file in one step, durably.
fn write_ring_file(path: &Path, keys: &[SecretSlice<u8>]) -> Result<(), KeyError> {
    let lines: Vec<SecretString> = keys.iter().map(crypto::encode_key).collect();
    let text = SecretString::from(lines.iter().map(|l| format!("{}\n", l.expose_secret())).collect::<String>());
    files::write_private(path, text.expose_secret().as_bytes(), Existing::Replace, true)
        .map_err(|source| KeyError::Io { path: path.to_path_buf(), source })
}

/// Creates a key file holding a new random key, in a 0700 directory, both
/// fsynced. When another process created it first, its key is used.
/// Returns the keys and whether this call created the file.
fn create_key_file(path: &Path) -> Result<(Vec<SecretSlice<u8>>, bool), KeyError> {
    let io = |source| KeyError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        files::create_private_dir(dir).map_err(io)?;
    }
    let key = crypto::generate_key();
    let text = SecretString::from(format!("{}\n", crypto::encode_key(&key).expose_secret()));
    match files::write_private(path, text.expose_secret().as_bytes(), Existing::Keep, true) {
        Ok(()) => Ok((vec![key], true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Ok((read_ring_file(path)?.ok_or_else(|| KeyError::BadKeyFile(path.to_path_buf()))?, false))
        }
        Err(e) => Err(io(e)),
    }
}

/// `path` with every existing part resolved (symlinks, `..`), so two names
/// for one place compare equal even before the file exists.
fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

fn is_inside(path: &Path, dir: &Path) -> bool {
    resolved(path).starts_with(resolved(dir))
}

/// A process's hold on a data directory: every `serve` shares it, a
/// rotation needs it alone, so a rotation never runs beside a server that
/// would keep sealing with the old key. Released when dropped.
pub struct DataDirLock {
    _file: fs::File,
}

impl DataDirLock {
    pub fn shared(data_dir: &Path) -> Result<Self, KeyError> {
        let file = Self::open(data_dir)?;
        match file.try_lock_shared() {
            Ok(()) => Ok(Self { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(KeyError::Rotating(data_dir.to_path_buf())),
            Err(fs::TryLockError::Error(source)) => Err(KeyError::Io { path: data_dir.join(LOCK_FILE), source }),
        }
    }

    pub fn exclusive(data_dir: &Path) -> Result<Self, KeyError> {
        let file = Self::open(data_dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(KeyError::InUse(data_dir.to_path_buf())),
            Err(fs::TryLockError::Error(source)) => Err(KeyError::Io { path: data_dir.join(LOCK_FILE), source }),
        }
    }

    fn open(data_dir: &Path) -> Result<fs::File, KeyError> {
        let path = data_dir.join(LOCK_FILE);
        let mut options = fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, files::PRIVATE_FILE);
        options.open(&path).map_err(|source| KeyError::Io { path, source })
    }
}

/// What a rotation did.
pub struct Rotation {
    pub source: KeySource,
    pub new_id: String,
    pub retired: Vec<String>,
    /// Re-sealed values by kind.
    pub resealed: BTreeMap<&'static str, u64>,
    /// The key file held a ring already: an earlier rotation was finished.
    pub resumed: bool,
    pub new_key_file: Option<(PathBuf, bool)>,
}

impl fmt::Display for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.resumed {
            writeln!(f, "Finished the rotation to key {} that had not finished.", self.new_id)?;
        }
        if let Some((path, created)) = &self.new_key_file {
            let how = if *created { "created with a new random key" } else { "read" };
            writeln!(f, "New key {} from {} ({how}).", self.new_id, path.display())?;
        }
        let total: u64 = self.resealed.values().sum();
        let kinds: Vec<String> = self.resealed.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
        writeln!(
            f,
            "Re-sealed {total} stored secrets under key {}{}.",
            self.new_id,
            if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) }
        )?;
        match &self.source {
            KeySource::File(path) => {
                writeln!(f, "{} now holds only key {}.", path.display(), self.new_id)?;
            }
            KeySource::Env => {
                writeln!(
                    f,
                    "Start the server without GATEHOUSE_MASTER_KEY and with --master-key-file {}.",
                    self.new_key_file.as_ref().map(|(p, _)| quote(p)).unwrap_or_default()
                )?;
            }
        }
        write!(
            f,
            "Back up the new key now, apart from the data directory. Backups of the data directory made before this rotation still need the retired key ({}).",
            self.retired.join(", ")
        )
    }
}

/// Re-seals every stored secret under a new key. The key file first holds
/// the new key (sealing) and the old ones, then every value is re-sealed in
/// one transaction, then the file holds the new key alone: stopped at any
/// point, every value opens with what the file holds, and running it again
/// finishes. Nothing changes unless every value opens first.
pub async fn rotate(loc: &Locator<'_>, store: &Store, new_key_file: Option<&Path>) -> Result<Rotation, KeyError> {
    let loaded = load(loc, store, Create::Never).await?;
    // Authorizations that expired unused would only be re-sealed to be dropped.
    store.delete_expired_oauth_states(Timestamp::now().unix()).await?;
    let mut new_file = None;
    let new_key = match new_key_file {
        Some(path) => {
            let (keys, created) = match read_ring_file(path)? {
                Some(keys) => (keys, false),
                None => create_key_file(path)?,
            };
            new_file = Some((path.to_path_buf(), created));
            keys[0].clone()
        }
        None if loaded.source == KeySource::Env => return Err(KeyError::EnvNeedsNewKeyFile),
        None if loaded.keys.len() > 1 => loaded.keys[0].clone(),
        None => crypto::generate_key(),
    };
    let new_id = crypto::key_id(&new_key);
    let resumed = loaded.keys.len() > 1 && new_id == loaded.ring.id();
    if new_id == loaded.ring.id() && loaded.keys.len() == 1 {
        return Err(KeyError::SameKey(new_id));
    }
    let mut keys = vec![new_key];
    keys.extend(loaded.keys.iter().filter(|k| crypto::key_id(k) != new_id).cloned());
    let ring = MasterKey::ring(&keys[0], &keys[1..]);
    let retired: Vec<String> = ring.ids().into_iter().skip(1).map(str::to_string).collect();

    let values = store.sealed_values().await?;
    let mut plan: Vec<(&SealedValue, crypto::Sealed)> = Vec::new();
    let (mut unreadable, mut unknown_ids) = (BTreeMap::<&str, u64>::new(), BTreeSet::new());
    for value in &values {
        match ring.open(value.slot.binding(), &value.sealed) {
            Ok(_) if value.sealed.key_id == new_id => {}
            Ok(secret) => plan.push((value, ring.seal(value.slot.binding(), secret.expose_secret()))),
            Err(_) => {
                *unreadable.entry(value.slot.kind()).or_default() += 1;
                unknown_ids.insert(value.sealed.key_id.clone());
            }
        }
    }
    if !unreadable.is_empty() {
        return Err(KeyError::Unreadable {
            count: unreadable.values().sum(),
            kinds: unreadable.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", "),
            ids: unknown_ids.into_iter().collect(),
        });
    }
    if let KeySource::File(path) = &loaded.source {
        write_ring_file(path, &keys)?;
    }
    store.reseal(&plan).await?;
    let left: u64 = store.key_ids_in_use().await?.into_iter().filter(|(id, _)| *id != new_id).map(|(_, n)| n).sum();
    if left > 0 {
        return Err(KeyError::StillInUse { count: left });
    }
    if let KeySource::File(path) = &loaded.source {
        write_ring_file(path, &keys[..1])?;
    }
    let mut resealed = BTreeMap::new();
    for (value, _) in &plan {
        *resealed.entry(value.slot.kind()).or_default() += 1;
    }
    Ok(Rotation { source: loaded.source, new_id, retired, resealed, resumed, new_key_file: new_file })
}

/// What `keys status` found.
pub struct KeyStatus {
    pub source: KeySource,
    pub ids: Vec<String>,
    /// Per key id, per kind: how many stored secrets it seals.
    pub sealed: BTreeMap<String, BTreeMap<&'static str, u64>>,
    pub total: u64,
    /// How many do not open with the ring.
    pub unreadable: u64,
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "master key: {}", self.source)?;
        writeln!(f, "sealing key: {}", self.ids[0])?;
        if self.ids.len() > 1 {
            writeln!(
                f,
                "also opening: {} (a rotation did not finish: run `gatehouse keys rotate` again)",
                self.ids[1..].join(", ")
            )?;
        }
        for (id, kinds) in &self.sealed {
            let list: Vec<String> = kinds.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
            writeln!(f, "key {id} seals {}", list.join(", "))?;
        }
        if self.total == 0 {
            write!(f, "no secrets are stored yet")
        } else if self.unreadable == 0 {
            write!(f, "all {} stored secrets open with these keys", self.total)
        } else {
            write!(f, "{} of {} stored secrets do not open with these keys", self.unreadable, self.total)
        }
    }
}

/// Opens every stored secret with the ring, to tell what it can read.
pub async fn status(loc: &Locator<'_>, store: &Store) -> Result<KeyStatus, KeyError> {
    let loaded = load(loc, store, Create::Never).await?;
    let values = store.sealed_values().await?;
    let mut sealed: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    let mut unreadable = 0;
    for value in &values {
        *sealed.entry(value.sealed.key_id.clone()).or_default().entry(value.slot.kind()).or_default() += 1;
        if loaded.ring.open(value.slot.binding(), &value.sealed).is_err() {
            unreadable += 1;
        }
    }
    Ok(KeyStatus {
        source: loaded.source,
        ids: loaded.ring.ids().into_iter().map(str::to_string).collect(),
        sealed,
        total: values.len() as u64,
        unreadable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Place {
        root: tempfile::TempDir,
        store: Store,
    }

    impl Place {
        async fn new() -> Self {
            let root = tempfile::tempdir().unwrap();
            fs::create_dir(root.path().join("data")).unwrap();
            let store = Store::open(None, &root.path().join("data")).await.unwrap();
            Self { root, store }
        }

        fn data(&self) -> PathBuf {
            self.root.path().join("data")
        }

        fn default_file(&self) -> PathBuf {
            self.root.path().join("config/gatehouse/master.key")
        }

        async fn load(&self, config: &KeyConfig) -> Result<LoadedKeys, KeyError> {
            let data = self.data();
            let loc = Locator { config, data_dir: &data, env: None, default_file: Some(self.default_file()) };
            load(&loc, &self.store, Create::IfMissing).await
        }
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn the_first_start_creates_a_private_key_outside_the_data_dir() {
        let place = Place::new().await;
        let first = place.load(&KeyConfig::default()).await.unwrap();
        assert!(first.created);
        assert_eq!(first.source, KeySource::File(place.default_file()));
        #[cfg(unix)]
        assert_eq!((mode(&place.default_file()), mode(place.default_file().parent().unwrap())), (0o600, 0o700));
        let again = place.load(&KeyConfig::default()).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.ring.id(), first.ring.id());
        assert!(!place.data().join(LEGACY_KEY_FILE).exists());
    }

    #[tokio::test]
    async fn a_key_file_inside_the_data_dir_is_refused_unless_allowed() {
        let place = Place::new().await;
        // Another spelling of the same place is still inside.
        let inside = place.data().join("..").join("data").join("keys").join("k");
        let config = KeyConfig { master_key_file: Some(inside.clone()), allow_key_in_data_dir: false };
        let e = place.load(&config).await.unwrap_err();
        assert!(matches!(e, KeyError::InsideDataDir { .. }), "{e}");
        assert!(e.to_string().contains(&format!("such as {}", place.default_file().display())), "{e}");
        assert!(!inside.exists(), "nothing was created");
        let allowed = KeyConfig { allow_key_in_data_dir: true, ..config };
        assert!(place.load(&allowed).await.unwrap().created);
    }

    #[tokio::test]
    async fn the_key_of_an_earlier_version_is_moved_not_replaced() {
        let place = Place::new().await;
        let legacy = place.data().join(LEGACY_KEY_FILE);
        fs::write(&legacy, crypto::encode_key(&crypto::generate_key()).expose_secret()).unwrap();
        let e = place.load(&KeyConfig::default()).await.unwrap_err();
        let text = e.to_string();
        let mv = format!("mv {} {}", legacy.display(), place.default_file().display());
        assert!(matches!(e, KeyError::LegacyKey { .. }) && text.contains(&mv), "{text}");
        assert!(!place.default_file().exists(), "no second key was created");
        // The flag accepts it where it is.
        let allowed = KeyConfig { allow_key_in_data_dir: true, ..KeyConfig::default() };
        let loaded = place.load(&allowed).await.unwrap();
        assert_eq!(loaded.source, KeySource::File(legacy.clone()));
        // Moved as told, it is used.
        fs::create_dir_all(place.default_file().parent().unwrap()).unwrap();
        fs::rename(&legacy, place.default_file()).unwrap();
        assert_eq!(place.load(&KeyConfig::default()).await.unwrap().ring.id(), loaded.ring.id());
    }

    #[tokio::test]
    async fn no_new_key_while_secrets_are_sealed_with_another() {
        let place = Place::new().await;
        let mut row = crate::store::tests::row("a");
        row.secret.key_id = "0123456789ab".into();
        place.store.insert(&row, &crate::store::audit::tests::entry()).await.unwrap();
        let e = place.load(&KeyConfig::default()).await.unwrap_err();
        assert!(matches!(e, KeyError::Missing { count: 2, .. }), "{e}");
        assert!(e.to_string().contains("0123456789ab"), "{e}");
        assert!(!place.default_file().exists());
    }

    #[tokio::test]
    async fn a_stray_copy_in_the_data_dir_is_refused() {
        let place = Place::new().await;
        let loaded = place.load(&KeyConfig::default()).await.unwrap();
        fs::copy(place.default_file(), place.data().join(LEGACY_KEY_FILE)).unwrap();
        let e = place.load(&KeyConfig::default()).await.unwrap_err();
        assert!(matches!(e, KeyError::StrayKey { .. }), "{e}");
        assert!(e.to_string().contains(&format!("rm {}", place.data().join(LEGACY_KEY_FILE).display())), "{e}");
        assert!(e.to_string().contains(loaded.ring.id()), "{e}");
    }

    #[tokio::test]
    async fn a_rotation_holds_both_keys_until_it_is_done() {
        let place = Place::new().await;
        let old = place.load(&KeyConfig::default()).await.unwrap();
        let mut row = crate::store::tests::row("a");
        row.secret = old.ring.seal(crypto::Binding::Credentials("a"), "secret a");
        row.refresh = None;
        place.store.insert(&row, &crate::store::audit::tests::entry()).await.unwrap();
        let config = KeyConfig::default();
        let data = place.data();
        let loc = Locator { config: &config, data_dir: &data, env: None, default_file: Some(place.default_file()) };

        let _running = DataDirLock::shared(&data).unwrap();
        assert!(matches!(DataDirLock::exclusive(&data), Err(KeyError::InUse(_))));
        drop(_running);

        let done = rotate(&loc, &place.store, None).await.unwrap();
        assert!(!done.resumed);
        assert_eq!(done.resealed, BTreeMap::from([("integration credentials", 1)]));
        let new = place.load(&config).await.unwrap();
        assert_eq!((new.ring.ids().len(), new.ring.id()), (1, done.new_id.as_str()));
        let stored = place.store.get("a").await.unwrap().unwrap();
        assert_eq!(
            new.ring.open(crypto::Binding::Credentials("a"), &stored.secret).unwrap().expose_secret(),
            "secret a"
        );
        assert!(old.ring.open(crypto::Binding::Credentials("a"), &stored.secret).is_err());
        let status = status(&loc, &place.store).await.unwrap();
        assert_eq!((status.total, status.unreadable), (1, 0));
    }
}

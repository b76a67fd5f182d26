//! Files the host owns on disk: created private (directories 0700, files
//! 0600), so other local users read nothing, and — where losing a write
//! would lose a secret — written durably: the file and the directory entry
//! naming it both reach the disk before the write counts as done.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

pub const PRIVATE_DIR: u32 = 0o700;
pub const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` and its missing parents with mode 0700. Returns whether it
/// had to be created; the directory holding the topmost new one is fsynced,
/// so the new entries survive a power loss.
pub fn create_private_dir(dir: &Path) -> io::Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    let mut top = dir;
    while let Some(parent) = top.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        top = parent;
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(PRIVATE_DIR);
    builder.create(dir)?;
    sync_dir(top.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
    Ok(true)
}

/// Flushes a directory's entries (a file created, renamed or linked in it).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// The permission bits of `path` that let other users in (group or
/// others), if any.
pub fn shared_mode(path: &Path) -> io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        let mode = fs::metadata(path)?.permissions().mode() & 0o777;
        Ok((mode & 0o077 != 0).then_some(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(None)
    }
}

/// Makes an existing file 0600 (earlier versions created 0644 files);
/// a missing file is left missing.
pub fn make_private(path: &Path) -> io::Result<()> {
    match shared_mode(path) {
        #[cfg(unix)]
        Ok(Some(_)) => fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_FILE)),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `path` empty with mode 0600 unless it exists.
pub fn create_private_file(path: &Path) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    options.mode(PRIVATE_FILE);
    options.open(path).map(drop)
}

/// How `write_private` may treat a file already at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it in one step.
    Replace,
    /// Leave it and fail with `AlreadyExists`: two processes creating the
    /// same file at once agree on the first one's content.
    Keep,
}

/// Writes `bytes` as `path` (mode 0600) so that a reader, or the disk after
/// a crash, sees either the old file or the whole new one, never a part:
/// written to a temporary file beside it, then renamed (or linked, for
/// `Existing::Keep`) into place. With `durable`, the file and then its
/// directory are fsynced before this returns.
pub fn write_private(path: &Path, bytes: &[u8], existing: Existing, durable: bool) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let tmp: PathBuf =
        dir.join(format!(".{}.tmp-{}-{:016x}", name.to_string_lossy(), std::process::id(), rand::random::<u64>()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(PRIVATE_FILE);
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
        drop(file);
        match existing {
            Existing::Replace => fs::rename(&tmp, path),
            Existing::Keep => fs::hard_link(&tmp, path),
        }
    })();
    // After a rename there is nothing left; after a link (or a failure) the
    // temporary name goes.
    let _ = fs::remove_file(&tmp);
    result?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_are_created_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        assert!(create_private_dir(&dir).unwrap());
        assert!(!create_private_dir(&dir).unwrap());
        assert_eq!((mode(&root.path().join("a")), mode(&dir)), (0o700, 0o700));
        let file = dir.join("f");
        write_private(&file, b"one", Existing::Keep, true).unwrap();
        assert_eq!(mode(&file), 0o600);
        let again = write_private(&file, b"two", Existing::Keep, true).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&file).unwrap(), b"one");
        write_private(&file, b"three", Existing::Replace, false).unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"three");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn loose_files_are_made_private() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("db");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(shared_mode(&file).unwrap(), Some(0o644));
        make_private(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        make_private(&root.path().join("missing")).unwrap();
        create_private_file(&root.path().join("new")).unwrap();
        assert_eq!(mode(&root.path().join("new")), 0o600);
    }
}

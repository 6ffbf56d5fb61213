//! The bundle store on a station (`device install`): verified bundles under `<store>/bundles/<id>/`
//! (`id` = sha256 of the bundle's `manifest.json`, which carries every model file's sha256), a
//! `current` link the station loads and a `previous` link to roll back to.
//!
//! Every step that changes what `current` names is a rename of a complete object: a bundle is copied
//! (or unpacked) into `bundles/.incoming-*`, fsynced and verified there (signature, hashes, graph
//! contract and golden self-test, for every model file it has) and only then renamed to
//! `bundles/<id>`; links are replaced by renaming a new link over the old one, `previous` first. A kill
//! at any point leaves `current` naming a complete, verified bundle (or absent on a store that never had
//! one). Leftovers of an interrupted install (`.incoming-*`, `.trash-*`) are removed by the next one;
//! bundles that neither link names are moved to `.trash-*` before they are deleted, so a half-deleted
//! folder never sits under a bundle name. One install at a time (an advisory lock on `.install.lock`).
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use runtime::engine::{Engine, EngineError, Precision};
use shared::manifest::{self, Manifest};
use shared::signature::PublicKey;

use crate::station::state::sync_dir;

/// The link the station loads.
pub const CURRENT: &str = "current";
/// The link to the bundle that was current before the last switch.
pub const PREVIOUS: &str = "previous";
/// The folder of verified bundles.
pub const BUNDLES: &str = "bundles";
/// Largest `.tar` bundle `device install` unpacks (all members together).
pub const MAX_TAR_BYTES: u64 = 2 << 30;

/// Why an install or a link change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The bundle (folder or `.tar`) is malformed.
    #[error("{path}: {reason}")]
    Bundle {
        /// The bundle or the member at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The bundle failed verification (signature, hashes, graph contract or golden self-test).
    #[error("refusing {path} ({precision} model): {source}")]
    Verify {
        /// The bundle as given.
        path: PathBuf,
        /// The model file that failed.
        precision: &'static str,
        /// The engine's reason.
        source: EngineError,
    },
    /// Another install holds the store's lock.
    #[error("{0}: another `device install` is running on this store")]
    Busy(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// What an install did.
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    /// `sha256(manifest.json)`, the bundle's folder name under `bundles/`.
    pub id: String,
    /// The bundle `current` named before (now `previous`), if another.
    pub replaced: Option<String>,
    /// The bundle was already current (nothing switched).
    pub already_current: bool,
    /// Model files verified, with the largest golden difference each (`None`: no golden tolerance).
    pub verified: Vec<(&'static str, Option<f32>)>,
}

/// A bundle store rooted at a folder (a station's `/var/lib/glass-edge`).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store at `root` (nothing is created until an install).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    /// The store whose `current` or `previous` link `model` is, if it is one.
    pub fn of_link(model: &Path) -> Option<Store> {
        let name = model.file_name()?;
        if name != CURRENT && name != PREVIOUS {
            return None;
        }
        let root = model.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        root.join(BUNDLES).is_dir().then(|| Store::new(root))
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bundle folder a link names (`None`: no such link, or it names nothing).
    pub fn resolve(&self, link: &str) -> Option<PathBuf> {
        fs::canonicalize(self.root.join(link)).ok().filter(|p| p.is_dir())
    }

    /// The bundle id (folder name) a link names.
    pub fn id_of(&self, link: &str) -> Option<String> {
        let target = fs::read_link(self.root.join(link)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// Points `current` back at what `previous` names (a bundle that failed at start); returns the id.
    ///
    /// # Errors
    /// No `previous`, or the link cannot be replaced.
    pub fn roll_back(&self) -> Result<String, StoreError> {
        let id = self.id_of(PREVIOUS).ok_or_else(|| StoreError::Bundle {
            path: self.root.join(PREVIOUS),
            reason: "no previous bundle to roll back to".into(),
        })?;
        self.set_link(CURRENT, &id)?;
        Ok(id)
    }

    /// Replaces `name` by a link to `bundles/<id>` (a new link renamed over the old one).
    fn set_link(&self, name: &str, id: &str) -> Result<(), StoreError> {
        let tmp = self.root.join(format!(".{name}.new"));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new(BUNDLES).join(id), &tmp).map_err(io(&tmp))?;
        let link = self.root.join(name);
        fs::rename(&tmp, &link).map_err(io(&link))?;
        sync_dir(&self.root).map_err(io(&self.root))
    }

    /// Verifies `bundle` (a folder from `host export`, or a `.tar` of one) and makes it current,
    /// keeping the bundle that was current as `previous` (see the module doc). Every model file is
    /// loaded the way the station loads it, with `trusted` keys (none: signatures unchecked).
    ///
    /// # Errors
    /// A malformed or refused bundle, an I/O error, or another install running.
    pub fn install(&self, bundle: &Path, trusted: &[PublicKey]) -> Result<Installed, StoreError> {
        let bundles = self.root.join(BUNDLES);
        fs::create_dir_all(&bundles).map_err(io(&bundles))?;
        let lock_path = self.root.join(".install.lock");
        let lock = fs::File::create(&lock_path).map_err(io(&lock_path))?;
        // flock(2): released by the kernel when the process ends, however it ends.
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns for the whole install.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::Busy(self.root.clone()));
        }
        self.remove_leftovers();
        let stage = bundles.join(format!(".incoming-{}-{}", std::process::id(), nanos()));
        let result = self.stage_and_switch(bundle, &stage, trusted);
        if stage.exists() {
            let _ = fs::remove_dir_all(&stage);
        }
        result
    }

    fn stage_and_switch(
        &self,
        bundle: &Path,
        stage: &Path,
        trusted: &[PublicKey],
    ) -> Result<Installed, StoreError> {
        fs::create_dir(stage).map_err(io(stage))?;
        let manifest_bytes = if bundle.is_dir() {
            copy_bundle(bundle, stage)?
        } else {
            let unpacked = stage.join(".unpacked");
            unpack_tar(bundle, &unpacked)?;
            let dir = bundle_folder(&unpacked).ok_or_else(|| StoreError::Bundle {
                path: bundle.to_path_buf(),
                reason: "no manifest.json at the top of the archive or in its one folder".into(),
            })?;
            let bytes = copy_bundle(&dir, stage)?;
            fs::remove_dir_all(&unpacked).map_err(io(&unpacked))?;
            bytes
        };
        sync_dir(stage).map_err(io(stage))?;
        let verified = verify(stage, bundle, trusted)?;
        let id = manifest::sha256_bytes(&manifest_bytes);
        let bundles = self.root.join(BUNDLES);
        let dest = bundles.join(&id);
        if !dest.is_dir() {
            fs::rename(stage, &dest).map_err(io(&dest))?;
            sync_dir(&bundles).map_err(io(&bundles))?;
        }
        let old = self.id_of(CURRENT).filter(|o| self.root.join(BUNDLES).join(o).is_dir());
        let already_current = old.as_deref() == Some(id.as_str());
        if !already_current {
            if let Some(o) = &old {
                self.set_link(PREVIOUS, o)?;
            }
            self.set_link(CURRENT, &id)?;
        }
        self.prune();
        Ok(Installed { id, replaced: old.filter(|_| !already_current), already_current, verified })
    }

    /// Removes what interrupted installs left behind (`.incoming-*`, `.trash-*`, `.*.new` links).
    fn remove_leftovers(&self) {
        let bundles = self.root.join(BUNDLES);
        for (dir, prefixes) in [
            (&bundles, &[".incoming-", ".trash-"][..]),
            (&self.root, &[".current.new", ".previous.new"][..]),
        ] {
            let Ok(rd) = fs::read_dir(dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if prefixes.iter().any(|p| name.starts_with(p)) {
                    let p = e.path();
                    let _ = if p.is_dir() && !p.is_symlink() {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                }
            }
        }
    }

    /// Deletes bundles neither link names (renamed to `.trash-*` first, then removed).
    fn prune(&self) {
        let keep: Vec<String> = [CURRENT, PREVIOUS].iter().filter_map(|l| self.id_of(l)).collect();
        let bundles = self.root.join(BUNDLES);
        let Ok(rd) = fs::read_dir(&bundles) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || keep.contains(&name) {
                continue;
            }
            let trash = bundles.join(format!(".trash-{name}-{}", nanos()));
            if fs::rename(e.path(), &trash).is_ok() {
                let _ = fs::remove_dir_all(&trash);
            }
        }
    }
}

fn nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Loads every model file of the staged bundle the way the station does (signature, hashes, graph
/// contract, golden self-test).
fn verify(
    stage: &Path,
    shown: &Path,
    trusted: &[PublicKey],
) -> Result<Vec<(&'static str, Option<f32>)>, StoreError> {
    let m = Manifest::load(stage).map_err(|e| StoreError::Verify {
        path: shown.to_path_buf(),
        precision: "fp32",
        source: e.into(),
    })?;
    let mut precisions = vec![Precision::Fp32];
    if m.files.int8.is_some() {
        precisions.push(Precision::Int8);
    }
    // Half precision only where the export measured it (its self-test tolerance is in the manifest).
    if m.files.golden.as_ref().is_some_and(|g| g.f16_tolerance.is_some()) {
        precisions.push(Precision::F16);
    }
    let mut out = Vec::new();
    for p in precisions {
        let engine = Engine::load_trusted(stage, p, trusted).map_err(|source| {
            StoreError::Verify { path: shown.to_path_buf(), precision: p.name(), source }
        })?;
        out.push((p.name(), engine.self_test().map(|t| t.max_difference)));
    }
    Ok(out)
}

/// Copies `manifest.json`, `manifest.sig` (when present) and the files the manifest lists from `src`
/// into `dst`, each fsynced; returns the manifest's bytes.
fn copy_bundle(src: &Path, dst: &Path) -> Result<Vec<u8>, StoreError> {
    let mpath = src.join(manifest::FILE_NAME);
    let m = Manifest::load(src)
        .map_err(|e| StoreError::Bundle { path: mpath.clone(), reason: e.to_string() })?;
    let mut names = vec![manifest::FILE_NAME.to_string()];
    if src.join(shared::signature::SIG_FILE).is_file() {
        names.push(shared::signature::SIG_FILE.to_string());
    }
    names.push(m.files.fp32.path.clone());
    names.extend(m.files.int8.iter().map(|f| f.path.clone()));
    names.extend(m.files.golden.iter().map(|g| g.file.path.clone()));
    let mut manifest_bytes = Vec::new();
    for name in names {
        let from = src.join(&name);
        let to = dst.join(&name);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let bytes = fs::read(&from).map_err(io(&from))?;
        write_synced(&to, &bytes)?;
        if name == manifest::FILE_NAME {
            manifest_bytes = bytes;
        }
    }
    Ok(manifest_bytes)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let mut f = fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io(path))
}

/// The folder holding `manifest.json`: the archive's top, or its one top-level folder.
fn bundle_folder(unpacked: &Path) -> Option<PathBuf> {
    if unpacked.join(manifest::FILE_NAME).is_file() {
        return Some(unpacked.to_path_buf());
    }
    let dirs: Vec<PathBuf> =
        fs::read_dir(unpacked).ok()?.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    match dirs.as_slice() {
        [d] if d.join(manifest::FILE_NAME).is_file() => Some(d.clone()),
        _ => None,
    }
}

/// Unpacks a `.tar`: plain files and folders only (links, devices and paths that leave the archive
/// are refused), at most [`MAX_TAR_BYTES`] in all.
fn unpack_tar(tar_path: &Path, dst: &Path) -> Result<(), StoreError> {
    let bad = |reason: String| StoreError::Bundle { path: tar_path.to_path_buf(), reason };
    let file = fs::File::open(tar_path).map_err(io(tar_path))?;
    fs::create_dir_all(dst).map_err(io(dst))?;
    let mut archive = tar::Archive::new(file);
    let mut total = 0u64;
    let entries = archive.entries().map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading the archive: {e}")))?;
        let rel = entry.path().map_err(|e| bad(format!("a member's name: {e}")))?.into_owned();
        let shown = rel.display().to_string();
        if rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(bad(format!("member {shown}: absolute or `..` paths are refused")));
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            let d = dst.join(&rel);
            fs::create_dir_all(&d).map_err(io(&d))?;
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!("member {shown}: only plain files and folders are accepted")));
        }
        total = total.saturating_add(entry.size());
        if total > MAX_TAR_BYTES {
            return Err(bad(format!("more than {MAX_TAR_BYTES} bytes of members")));
        }
        let to = dst.join(&rel);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut out = fs::File::create(&to).map_err(io(&to))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| bad(format!("member {shown}: {e}")))?;
    }
    Ok(())
}

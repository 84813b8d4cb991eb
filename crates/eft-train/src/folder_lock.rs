//! One process per run folder: an advisory lock on `<folder>/.lock`, held for the life of the
//! process's work there and released by the operating system when the process ends, even by
//! `kill -9`. The file holds the owner's process id, for the error a second process gets. The
//! new owner removes the temporary files of [`write_atomic`](crate::write_atomic) that a killed
//! owner left behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::TrainError;

/// Name of the lock file inside a locked folder.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive claim on a folder; dropping it releases the folder.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
    path: PathBuf,
}

impl FolderLock {
    /// Creates `folder` if needed and claims it, or says which process holds it.
    pub fn acquire(folder: &Path) -> Result<Self, TrainError> {
        std::fs::create_dir_all(folder).map_err(TrainError::io(folder))?;
        let path = folder.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(TrainError::io(&path))?;
        match file.try_lock() {
            Ok(()) => {
                let pid = std::process::id().to_string();
                let write = |f: &mut File| {
                    f.set_len(0)?;
                    f.rewind()?;
                    f.write_all(pid.as_bytes())
                };
                write(&mut file).map_err(TrainError::io(&path))?;
                remove_stray_temporaries(folder);
                Ok(Self { _file: file, path })
            }
            Err(TryLockError::WouldBlock) => {
                let mut owner = String::new();
                let _ = file.read_to_string(&mut owner);
                let owner = match owner.trim() {
                    "" => "another process".to_string(),
                    pid => format!("process {pid}"),
                };
                Err(TrainError::file(
                    folder,
                    format!("in use by {owner}"),
                    "wait for it to end or stop it (Ctrl-C), or choose another --name or --out",
                ))
            }
            Err(TryLockError::Error(e)) => Err(TrainError::io(&path)(e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes `.NAME.tmp-PID` files: with the folder claimed, no live process is writing them.
fn remove_stray_temporaries(folder: &Path) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_names_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let stray = run.join(".checkpoint.safetensors.tmp-4194303");
        std::fs::write(&stray, b"half a checkpoint").unwrap();
        std::fs::write(run.join("record.json"), b"{}").unwrap();
        let first = FolderLock::acquire(&run).unwrap();
        assert!(
            !stray.exists(),
            "a killed writer's temporary file is removed"
        );
        assert!(run.join("record.json").exists(), "nothing else is");
        let e = FolderLock::acquire(&run).unwrap_err().to_string();
        let pid = std::process::id().to_string();
        assert!(e.contains(&format!("in use by process {pid}")), "{e}");
        drop(first);
        let again = FolderLock::acquire(&run).unwrap();
        assert_eq!(std::fs::read_to_string(again.path()).unwrap(), pid);
    }
}

